// An asynchronous HTTP/1.1 server on Boost.Beast/Asio that holds up against hostile
// clients. One io thread multiplexes every connection (so thousands of open SSE streams
// cost sockets and buffers, not threads). Each connection moves through three phases:
// idle (no byte of a request yet: the keep-alive timeout, or the header timeout on a
// fresh connection), reading (the header timeout, then the body timeout) and responding
// (no timeout: a request that is queued or streaming is never idle). Idle and reading
// connections are the ones evicted, oldest first, when --max-connections is reached or
// descriptors run out, so a flood of half-open sockets cannot lock real clients out.
// Malformed requests get 400, an oversized header 431, an oversized body 413 (also
// before the body is sent, for `Expect: 100-continue`), all as OpenAI error objects.
// HTTP/1.0 clients get plain (unchunked) streams ended by closing; HEAD is GET without
// the body. Input a client pushes while its request runs and output it does not read
// are both bounded: beyond the bounds the connection is dropped and its request
// cancelled (on_close), as when the client goes away. CORS (cors.hpp), when configured,
// is applied here to every answer, streams and refusals included, and preflights are
// answered without reaching the handler.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "launch/http/cors.hpp"
#include "runtime/system/error.hpp"

namespace baton::http {

struct request {
  std::string method;                 ///< "GET", "POST", ...; a HEAD arrives as "GET"
  std::string target;                 ///< the path (query string cut off), as sent: any bytes
  std::string body;
  std::string authorization;          ///< the Authorization header
  std::string peer;                   ///< the client's address, "127.0.0.1" or "::1"
  bool head = false;                  ///< a HEAD request: the body of the answer is dropped
};

/// One request's answer; thread-safe (every call is posted to the io thread), and safe
/// to call after the server is gone (the calls are then dropped).
class response {
 public:
  virtual ~response() = default;
  /// A whole response.
  virtual void send(int status, const std::string& content_type, std::string body,
                    header_list headers = {}) = 0;
  /// Starts a streamed response (SSE: text/event-stream); then chunk()..., end().
  /// Chunked for HTTP/1.1 clients; for HTTP/1.0 ones the body ends with the connection.
  virtual void start_stream(int status, const std::string& content_type,
                            header_list headers = {}) = 0;
  virtual void chunk(std::string data) = 0;
  virtual void end() = 0;
  /// `fn` runs (on the io thread) if the client goes away, or is dropped for not reading
  /// its answer, before the response is done.
  virtual void on_close(std::function<void()> fn) = 0;
};

/// Called on the io thread: must not block (hand slow work to other threads).
using handler = std::function<void(request, std::shared_ptr<response>)>;

/// What one server accepts and for how long it waits.
struct server_limits {
  uint64_t body_bytes = 4 * 1024 * 1024;        ///< 413 beyond
  uint32_t header_bytes = 64 * 1024;            ///< 431 beyond
  std::chrono::milliseconds keep_alive{5000};   ///< idle between two requests
  std::chrono::milliseconds header{10000};      ///< first byte .. end of the header
  std::chrono::milliseconds body{30000};        ///< end of the header .. end of the body
  /// A write the client does not take within this time drops the connection.
  std::chrono::milliseconds send{30000};
  size_t max_connections = 1024;                ///< beyond: the oldest idle one is closed
  uint64_t max_unsent_bytes = 16 * 1024 * 1024; ///< output queued for a client that stalls
  uint64_t max_pipelined_bytes = 1024 * 1024;   ///< input pushed while a request runs
};

/// Counters of what the server did on its own (requests the handler never saw).
struct server_counters {
  uint64_t connections_open = 0;
  uint64_t connections_total = 0;
  uint64_t evicted = 0;            ///< idle or partial connections closed at the limit
  uint64_t timed_out = 0;          ///< closed by the keep-alive, header, body or send timeout
  uint64_t bad_request = 0;        ///< 400: malformed request line, header or chunking
  uint64_t header_too_large = 0;   ///< 431
  uint64_t body_too_large = 0;     ///< 413
  uint64_t dropped_slow = 0;       ///< dropped for not reading or for pushing too much
  uint64_t handler_errors = 0;     ///< 500: the handler threw
  uint64_t accept_errors = 0;
};

class server {
 public:
  /// Binds host:port (port 0: an ephemeral one, see port()). `cors`: the CORS headers
  /// every answer gets, and the preflights answered before the handler (off by default).
  static result<std::unique_ptr<server>> create(const std::string& host, uint16_t port,
                                                handler h, server_limits limits,
                                                cors_policy cors = {});
  ~server();
  uint16_t port() const;
  /// Serves until stop() (from any thread).
  void run();
  void stop();
  /// Thread-safe.
  server_counters counters() const;

 private:
  server() = default;
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// Raises the soft limit on open descriptors to the hard one; returns the soft limit now.
uint64_t raise_descriptor_limit();

/// The body of an OpenAI error object for the server's own answers (400, 413, 431, 500).
std::string error_body(const std::string& message, const std::string& type,
                       const std::string& code);

}  // namespace baton::http
