// Cross-origin resource sharing for `baton serve`, as vLLM configures it (its flags
// --allowed-origins, --allowed-methods, --allowed-headers, --allow-credentials) and
// Starlette's CORSMiddleware applies it: a request whose Origin is allowed gets
// Access-Control-Allow-Origin (the origin itself, or `*` for a wildcard without
// credentials) and `Vary: Origin`; a preflight (OPTIONS with Origin and
// Access-Control-Request-Method) is answered here, on any path and before any API key
// is asked for, since browsers send none with it. An origin that is not allowed gets no
// CORS header, so the browser keeps the answer from the page. With no origins
// configured (the default, unlike vLLM's '["*"]') nothing changes. The HTTP server
// (http_server) asks the policy once per request; the OpenAI front end knows nothing of it.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/system/error.hpp"

namespace baton::http {

using header_list = std::vector<std::pair<std::string, std::string>>;

/// The answer to a preflight request.
struct preflight_answer {
  int status = 204;           ///< 204, or 400 for an origin, method or header not allowed
  header_list headers;        ///< the Access-Control-* headers (none with a 400)
  std::string message;        ///< why a 400, for its error body
};

class cors_policy {
 public:
  /// The flags' values, each a JSON list ('["http://a.com"]') or a comma-separated one
  /// ("http://a.com, http://b.com"). An origin is `*` or scheme://host[:port] without a
  /// path; methods and header names are HTTP tokens or `*`. Errors name the flag and the
  /// value. An empty `origins` leaves CORS off.
  static result<cors_policy> parse(const std::string& origins, const std::string& methods,
                                   const std::string& headers, bool credentials);

  bool enabled() const { return !origins_.empty(); }
  /// The headers for the answer to a request that carried `origin` (empty for none):
  /// nothing when CORS is off or the origin is not allowed.
  header_list response_headers(std::string_view origin) const;
  /// The answer to a preflight: `method` and `request_headers` are its
  /// Access-Control-Request-Method and Access-Control-Request-Headers.
  preflight_answer preflight(std::string_view origin, std::string_view method,
                             std::string_view request_headers) const;

 private:
  bool allows_origin(std::string_view origin) const;

  // -- member variables -------------------------------------------------------
  std::vector<std::string> origins_;  ///< as given; "*" for any
  std::vector<std::string> methods_;  ///< upper case; "*" for any
  std::vector<std::string> headers_;  ///< lower case; "*" for any
  bool credentials_ = false;          ///< Access-Control-Allow-Credentials: true
};

}  // namespace baton::http
