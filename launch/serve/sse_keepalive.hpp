// SSE keep-alive: a thread that sends a comment (": keep-alive") to every open stream that
// has been silent for a while — a pause while a lost stage is replaced, a long prefill —
// so that clients and proxies with read timeouts keep waiting. SSE readers skip comments.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "launch/http/http_server.hpp"

namespace baton {

class sse_keepalive {
 public:
  /// Streams silent for `silence` get a comment; checked every `silence` / 4.
  explicit sse_keepalive(std::chrono::milliseconds silence = std::chrono::seconds(2));
  ~sse_keepalive();
  sse_keepalive(const sse_keepalive&) = delete;
  sse_keepalive& operator=(const sse_keepalive&) = delete;

  /// Watches stream `id` from now on.
  void add(uint64_t id, std::shared_ptr<http::response> res);
  /// Stream `id` sent something: its silence starts again. Any thread.
  void sent(uint64_t id);
  /// Stream `id` ends: once this returns, no comment is sent to it.
  void remove(uint64_t id);

 private:
  void loop();

  // -- member variables -------------------------------------------------------
  std::chrono::milliseconds silence_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  struct entry {
    std::shared_ptr<http::response> res;
    std::chrono::steady_clock::time_point last;
  };
  std::map<uint64_t, entry> streams_;
  std::thread thread_;
};

}  // namespace baton
