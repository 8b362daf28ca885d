// http::server alone, with handlers written for the test: a client that stops reading
// its stream is dropped once its unsent output passes the bound and its request is
// cancelled (on_close); a response used after the server is gone is a no-op; the
// oldest idle connection is the one evicted at --max-connections.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <vector>
#include <chrono>
#include <thread>

#include "launch/http/http_server.hpp"

namespace baton {
namespace {

using namespace std::chrono_literals;

int connect_to(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  return fd;
}

/// Whether the server closed `fd` within `timeout` (reading and dropping what comes).
bool closed_within(int fd, std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  char buf[65536];
  while (std::chrono::steady_clock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) > 0 && ::recv(fd, buf, sizeof buf, 0) <= 0) {
      return true;
    }
  }
  return false;
}

/// A server on an ephemeral port, run on its own thread.
struct running_server {
  std::unique_ptr<http::server> s;
  std::thread io;
  running_server(http::handler h, http::server_limits limits) {
    auto r = http::server::create("127.0.0.1", 0, std::move(h), limits);
    EXPECT_TRUE(static_cast<bool>(r));
    s = std::move(*r);
    io = std::thread([this] { s->run(); });
  }
  ~running_server() { stop(); }
  void stop() {
    if (io.joinable()) {
      s->stop();
      io.join();
    }
  }
  int port() const { return s->port(); }
};

TEST(http_server, a_client_that_stops_reading_is_dropped_and_its_request_cancelled) {
  std::atomic<bool> cancelled{false};
  std::atomic<uint64_t> produced{0};
  std::thread producer;
  http::server_limits limits;
  limits.max_unsent_bytes = 4 << 20;
  running_server srv(
      [&](http::request, std::shared_ptr<http::response> res) {
        res->on_close([&] { cancelled = true; });
        res->start_stream(200, "text/event-stream");
        producer = std::thread([res, &cancelled, &produced] {
          const std::string chunk(64 * 1024, 'x');
          while (!cancelled && produced < (uint64_t{1} << 30)) {
            res->chunk(chunk);
            produced += chunk.size();
            std::this_thread::sleep_for(1ms);
          }
        });
      },
      limits);
  const int fd = connect_to(srv.port());
  const std::string req = "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(::send(fd, req.data(), req.size(), 0), static_cast<ssize_t>(req.size()));
  // never read: the kernel's buffers fill, then the server's queue passes 4 MiB
  for (int i = 0; i < 300 && !cancelled; ++i) {
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(cancelled) << "produced " << produced << " bytes and the request still runs";
  producer.join();
  EXPECT_GE(srv.s->counters().dropped_slow, 1u);
  std::printf("dropped after %.1f MiB were produced\n", static_cast<double>(produced) / (1 << 20));
  ::close(fd);
}

TEST(http_server, a_client_that_half_closes_during_a_stream_is_released) {
  // found by the http fuzzer: an EOF that arrived while a write was under way left the
  // socket open for good (one descriptor lost per such client)
  std::atomic<int> closes{0};
  std::vector<std::thread> producers;
  std::mutex mu;
  running_server srv(
      [&](http::request, std::shared_ptr<http::response> res) {
        auto stop = std::make_shared<std::atomic<bool>>(false);
        res->on_close([stop, &closes] {
          *stop = true;
          ++closes;
        });
        res->start_stream(200, "text/event-stream");
        std::lock_guard<std::mutex> lock(mu);
        producers.emplace_back([res, stop] {
          const std::string chunk(16 * 1024, 'x');
          for (int i = 0; i < 2000 && !*stop; ++i) {
            res->chunk(chunk);
          }
          res->end();
        });
      },
      http::server_limits{});
  const int n = 30;
  for (int i = 0; i < n; ++i) {
    const int fd = connect_to(srv.port());
    const std::string req = "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n";
    ASSERT_EQ(::send(fd, req.data(), req.size(), 0), static_cast<ssize_t>(req.size()));
    std::this_thread::sleep_for(5ms);
    ::shutdown(fd, SHUT_WR);
    EXPECT_TRUE(closed_within(fd, 5s)) << "client " << i << " was never released";
    ::close(fd);
  }
  for (int i = 0; i < 100 && srv.s->counters().connections_open > 0; ++i) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(srv.s->counters().connections_open, 0u);
  for (auto& t : producers) {
    t.join();
  }
}

TEST(http_server, a_response_used_after_the_server_is_gone_does_nothing) {
  std::shared_ptr<http::response> kept;
  {
    running_server srv(
        [&](http::request, std::shared_ptr<http::response> res) { kept = std::move(res); },
        http::server_limits{});
    const int fd = connect_to(srv.port());
    const std::string req = "GET /late HTTP/1.1\r\nHost: x\r\n\r\n";
    ASSERT_EQ(::send(fd, req.data(), req.size(), 0), static_cast<ssize_t>(req.size()));
    for (int i = 0; i < 100 && !kept; ++i) {
      std::this_thread::sleep_for(20ms);
    }
    ASSERT_TRUE(kept);
    srv.stop();
    srv.s.reset();
    ::close(fd);
  }
  kept->start_stream(200, "text/event-stream");  // must neither crash nor leak into nothing
  kept->chunk("data: late\n\n");
  kept->end();
  kept->on_close([] {});
  kept.reset();
}

TEST(http_server, the_oldest_idle_connection_is_evicted_at_the_limit) {
  http::server_limits limits;
  limits.max_connections = 4;
  running_server srv(
      [](http::request, std::shared_ptr<http::response> res) {
        res->send(200, "text/plain", "ok");
      },
      limits);
  std::vector<int> fds;
  for (int i = 0; i < 4; ++i) {
    fds.push_back(connect_to(srv.port()));
    std::this_thread::sleep_for(50ms);  // in order
  }
  const int newest = connect_to(srv.port());
  EXPECT_TRUE(closed_within(fds[0], 3s)) << "the oldest idle connection is still open";
  EXPECT_FALSE(closed_within(fds[3], 300ms));
  const std::string req = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  ASSERT_EQ(::send(newest, req.data(), req.size(), 0), static_cast<ssize_t>(req.size()));
  char buf[256] = {};
  pollfd p{newest, POLLIN, 0};
  ASSERT_GT(::poll(&p, 1, 3000), 0);
  ASSERT_GT(::recv(newest, buf, sizeof buf - 1, 0), 0);
  EXPECT_EQ(std::string(buf).rfind("HTTP/1.1 200", 0), 0u) << buf;
  EXPECT_GE(srv.s->counters().evicted, 1u);
  for (int fd : fds) {
    ::close(fd);
  }
  ::close(newest);
}

}  // namespace
}  // namespace baton
