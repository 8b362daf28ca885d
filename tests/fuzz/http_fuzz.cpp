// libFuzzer target for the HTTP request path of `baton serve`: each input is the raw
// bytes a client sends on one connection. They go over loopback to the real
// http::server with the real OpenAI front end (routes, keys, parsing, tokenising,
// streaming) over a stub backend that answers every admission outcome and streams a few
// events; the client half-closes and reads until the server closes. Any crash, sanitizer
// report or a connection the server never closes (the 10 s guard) is a finding.
// The tokenizer comes from the GGUF file named by $BATON_FUZZ_MODEL (scripts/fuzz.sh sets it).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "launch/http/http_server.hpp"
#include "launch/serve/openai_server.hpp"
#include "runtime/model/gguf.hpp"
#include "runtime/text/vocab.hpp"

namespace {

using namespace baton;

/// Answers as the pipeline would, with every outcome chosen by the request itself.
class stub_backend final : public api::serving_backend {
 public:
  std::shared_ptr<event_stream> submit(gen_request r, admission* decision) override {
    auto s = std::make_shared<event_stream>();
    const auto pick = static_cast<uint32_t>(r.max_tokens) % 5;
    decision->verdict = pick < 3 ? admit::ok : admit::never;
    decision->reason = pick == 3 ? refusal::queue_full : pick == 4 ? refusal::stage_down
                                                                  : refusal::none;
    decision->message = pick == 3 ? "queue full" : "stage 1 (rank 1) is down";
    if (pick >= 3) {
      return s;
    }
    for (int i = 0; i < 3; ++i) {
      gen_event e;
      e.request_id = r.id;
      e.token = static_cast<int32_t>(r.prompt.empty() ? 0 : r.prompt.back());
      e.text = i == 1 ? std::string("\xff\xfe") : "ok";  // random weights make invalid UTF-8
      e.top_ids = {e.token};
      e.top_logprobs = {-0.5f};
      s->push(e);
    }
    gen_event last;
    last.request_id = r.id;
    last.finish = pick == 2 ? finish_reason::error : finish_reason::length;
    last.error = "a stage failed";
    last.error_kind = pick == 2 ? refusal::stage_down : refusal::none;
    last.prompt_tokens = static_cast<int32_t>(r.prompt.size());
    last.completion_tokens = 3;
    s->push(last);
    return s;
  }
  void cancel(uint64_t) override {}
  serving_snapshot snapshot() const override {
    serving_snapshot s;
    s.stats.total_blocks = 64;
    s.stats.free_blocks = 60;
    s.stage_step_seconds = {0.01, 0.02};
    return s;
  }
};

struct harness {
  std::shared_ptr<const tokenizer> tok;
  stub_backend backend;
  std::unique_ptr<api::front_end> fe;
  std::unique_ptr<http::server> server;
  std::thread io;
  int port = 0;

  harness() {
    const char* path = std::getenv("BATON_FUZZ_MODEL");
    if (path == nullptr) {
      std::fprintf(stderr, "fuzz_http: set BATON_FUZZ_MODEL to a GGUF file (its tokenizer)\n");
      std::abort();
    }
    auto f = gguf_file::open(path);
    auto spec = f ? load_vocab(*f) : result<vocab_spec>(f.err());
    auto t = spec ? tokenizer::create(std::move(*spec)) : result<tokenizer>(spec.err());
    if (!t) {
      std::fprintf(stderr, "fuzz_http: %s: %s\n", path, t.err().message.c_str());
      std::abort();
    }
    tok = std::make_shared<const tokenizer>(std::move(*t));
    api::front_end_options o;
    o.model_name = "fuzz";
    o.n_ctx = 256;
    o.n_vocab = tok->n_vocab();
    o.n_workers = 1;
    auto keys = api::api_keys::load({}, "");
    fe = std::make_unique<api::front_end>(o, std::move(*keys), tok, backend);
    http::server_limits limits;
    limits.body_bytes = 64 * 1024;
    limits.header_bytes = 8 * 1024;
    limits.keep_alive = std::chrono::milliseconds(200);
    limits.header = std::chrono::milliseconds(200);
    limits.body = std::chrono::milliseconds(200);
    auto s = http::server::create(
        "127.0.0.1", 0,
        [this](http::request rq, std::shared_ptr<http::response> res) {
          fe->handle(std::move(rq), std::move(res));
        },
        limits);
    if (!s) {
      std::fprintf(stderr, "fuzz_http: %s\n", s.err().message.c_str());
      std::abort();
    }
    server = std::move(*s);
    port = server->port();
    io = std::thread([this] { server->run(); });
    io.detach();  // lives as long as the process
  }
};

harness& h() {
  static harness* x = new harness();  // never destroyed: libFuzzer exits without unwinding
  return *x;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int port = h().port;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = -1;
  // thousands of connections a second use up the ephemeral ports (TIME_WAIT): a
  // connect that finds none free waits for one; a refused one is a finding
  for (int attempt = 0;; ++attempt) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      break;
    }
    int e = errno;
    if (e == EINTR) {  // libFuzzer's timer signal: the connect goes on; wait for its end
      pollfd p{fd, POLLOUT, 0};
      socklen_t len = sizeof e;
      if (::poll(&p, 1, 5000) > 0 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) == 0 &&
          e == 0) {
        break;
      }
    }
    ::close(fd);
    if ((e != EADDRNOTAVAIL && e != EAGAIN) || attempt > 200) {
      std::fprintf(stderr, "fuzz_http: connect: %s\n", std::strerror(e));
      std::abort();  // the server stopped accepting
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  size_t off = 0;
  while (off < size) {
    const ssize_t n = ::send(fd, data + off, size - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;  // the server closed early (a refusal)
    }
    off += static_cast<size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  char buf[65536];
  for (;;) {
    if (std::chrono::steady_clock::now() > until) {
      std::fprintf(stderr, "fuzz_http: the server kept a half-closed connection for 10 s\n");
      std::abort();
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) {
      continue;
    }
    if (::recv(fd, buf, sizeof buf, 0) <= 0) {
      break;
    }
  }
  const linger reset{1, 0};  // the server closed first; leave no TIME_WAIT here
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
  ::close(fd);
  return 0;
}
