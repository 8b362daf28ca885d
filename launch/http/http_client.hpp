// A small synchronous HTTP/1.1 client (Boost.Beast) for the commands that talk to an
// OpenAI-compatible server: `baton client` and `baton bench serve`. One TCP connection
// per request, plain http only. Failures of the transport (refused, reset, a timeout, a
// malformed reply) come back as `error` values; an HTTP status is data, so a caller can
// count 429s, and `http_response::error_message()` reads the server's OpenAI error
// object. One client per thread: it owns an io_context and is not thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "runtime/system/error.hpp"

namespace baton::cli {

/// Where the server is: http://host[:port][/prefix]. A trailing "/v1" is dropped from the
/// prefix (OpenAI clients take base URLs that end in /v1; the commands add it themselves).
struct http_url {
  std::string host = "127.0.0.1";
  std::string port = "8000";
  std::string prefix;  ///< "" or "/something", never ending in '/'

  std::string to_string() const;
};

/// Parses "http://host:port/prefix", "host:port" or "http://[::1]:8000"; the port
/// defaults to 80 when the scheme is given, 8000 when it is not.
result<http_url> parse_http_url(std::string_view text);

/// A reply that arrived. `body` is empty for a 2xx event stream (its events went to the
/// callback).
struct http_response {
  int status = 0;
  std::string content_type;
  std::string body;
  bool saw_done = false;  ///< an event stream ended with `data: [DONE]`

  bool ok() const { return status >= 200 && status < 300; }
  /// openai_error_message(body) (the OpenAI error object's message, else the body
  /// trimmed to 200 bytes), else the status' reason phrase.
  std::string error_message() const;
};

/// Called with each `data:` payload of an event stream (without "data: "), before
/// `[DONE]`; returns false to stop reading.
using sse_callback = std::function<bool(std::string_view data)>;

class http_client {
 public:
  /// `api_key` non-empty: every request carries `Authorization: Bearer <api_key>`.
  /// `timeout`: the longest wait for connecting, sending, or any bytes of the reply.
  http_client(http_url url, std::string api_key,
              std::chrono::milliseconds timeout = std::chrono::minutes(10));
  ~http_client();
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  const http_url& url() const { return url_; }

  /// GET prefix + path.
  result<http_response> get(std::string_view path);
  /// POST prefix + path with a JSON body.
  result<http_response> post(std::string_view path, const nlohmann::json& body);
  /// POST whose 2xx reply is a text/event-stream, read as the chunks arrive: `on_data`
  /// gets every `data:` line until `data: [DONE]` or the end of the body. A non-2xx
  /// reply is read whole into `body`, as post() would.
  result<http_response> post_stream(std::string_view path, const nlohmann::json& body,
                                    const sse_callback& on_data);

  /// GET/POST returning the body parsed as JSON when the status is 2xx; otherwise an
  /// error "<server's message> (HTTP <status>)".
  result<nlohmann::json> get_json(std::string_view path);
  result<nlohmann::json> post_json(std::string_view path, const nlohmann::json& body);

 private:
  struct impl;

  // -- member variables -------------------------------------------------------
  http_url url_;
  std::string api_key_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<impl> impl_;
};

/// "<message> (HTTP <status>)" for a non-2xx reply.
std::string describe_http_error(const http_response& r);

}  // namespace baton::cli
