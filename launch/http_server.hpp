// An asynchronous HTTP/1.1 server on Boost.Beast/Asio: one io thread multiplexes every
// connection (so thousands of open SSE streams cost sockets and buffers, not threads),
// requests up to a body limit (413 beyond it), keep-alive, and responses written either
// whole or as a chunked stream (SSE). A handler gets each request with a `response`
// it may answer at once or later from any thread; while a response is pending the
// connection watches its socket, so a client that goes away is noticed at once
// (on_close), which is how a disconnect cancels its request.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runtime/error.hpp"

namespace baton::http {

struct request {
  std::string method;                 ///< "GET", "POST", ...
  std::string target;                 ///< the path (query string cut off)
  std::string body;
  std::string authorization;          ///< the Authorization header
};

using header_list = std::vector<std::pair<std::string, std::string>>;

/// One request's answer; thread-safe (every call is posted to the io thread).
class response {
 public:
  virtual ~response() = default;
  /// A whole response.
  virtual void send(int status, const std::string& content_type, std::string body,
                    header_list headers = {}) = 0;
  /// Starts a chunked response (SSE: text/event-stream); then chunk()..., end().
  virtual void start_stream(int status, const std::string& content_type) = 0;
  virtual void chunk(std::string data) = 0;
  virtual void end() = 0;
  /// `fn` runs (on the io thread) if the client goes away before the response is done.
  virtual void on_close(std::function<void()> fn) = 0;
};

using handler = std::function<void(request, std::shared_ptr<response>)>;

class server {
 public:
  /// Binds host:port (port 0: an ephemeral one, see port()).
  static result<std::unique_ptr<server>> create(const std::string& host, uint16_t port,
                                                handler h, uint64_t body_limit);
  ~server();
  uint16_t port() const;
  /// Serves until stop() (from any thread).
  void run();
  void stop();

 private:
  server() = default;
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace baton::http
