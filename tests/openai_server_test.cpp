// The OpenAI front end over a scripted backend (no pipeline): an exception anywhere in
// a handler is a 500 OpenAI error and the server goes on; every typed refusal and final
// event kind maps to its HTTP status (429 with Retry-After, 503, 400, 500) without any
// message text being matched.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "launch/http/http_server.hpp"
#include "launch/serve/openai_server.hpp"
#include "runtime/model/gguf.hpp"
#include "runtime/text/vocab.hpp"
#include "tests/mpi_util.hpp"

namespace baton {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

/// What the backend does with the next submit.
struct script {
  bool throw_on_submit = false;
  refusal why = refusal::none;               ///< none: admitted
  refusal final_kind = refusal::none;        ///< the final event's error kind, when an error
  bool final_error = false;
};

class scripted_backend final : public api::serving_backend {
 public:
  script next;
  std::shared_ptr<event_stream> submit(gen_request r, admission* decision) override {
    if (next.throw_on_submit) {
      throw std::runtime_error("scripted failure");
    }
    auto s = std::make_shared<event_stream>();
    decision->verdict = next.why == refusal::none ? admit::ok : admit::never;
    decision->reason = next.why;
    decision->message = "scripted refusal";
    decision->retry_after_s = 3;
    if (next.why != refusal::none) {
      return s;
    }
    gen_event e;
    e.request_id = r.id;
    e.finish = next.final_error ? finish_reason::error : finish_reason::length;
    e.error = "scripted error";
    e.error_kind = next.final_kind;
    s->push(e);
    return s;
  }
  void cancel(uint64_t) override {}
  serving_snapshot snapshot() const override { return {}; }
};

struct fixture_server {
  scripted_backend backend;
  std::unique_ptr<api::front_end> fe;
  std::unique_ptr<http::server> server;
  std::thread io;

  fixture_server() {
    auto f = gguf_file::open(mpi_test::fx().model);
    EXPECT_TRUE(static_cast<bool>(f));
    auto spec = load_vocab(*f);
    auto t = tokenizer::create(std::move(*spec));
    auto tok = std::make_shared<const tokenizer>(std::move(*t));
    api::front_end_options o;
    o.model_name = "m";
    o.n_ctx = 512;
    o.n_vocab = tok->n_vocab();
    fe = std::make_unique<api::front_end>(o, std::move(*api::api_keys::load({}, "")), tok,
                                          backend);
    auto s = http::server::create(
        "127.0.0.1", 0,
        [this](http::request rq, std::shared_ptr<http::response> res) {
          fe->handle(std::move(rq), std::move(res));
        },
        http::server_limits{});
    server = std::move(*s);
    io = std::thread([this] { server->run(); });
  }
  ~fixture_server() {
    server->stop();
    io.join();
  }

  /// One request with Connection: close; the raw answer.
  std::string ask(const std::string& path, const std::string& body) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(server->port());
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    const std::string req = (body.empty() ? "GET " : "POST ") + path +
                            " HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: " +
                            std::to_string(body.size()) + "\r\n\r\n" + body;
    EXPECT_EQ(::send(fd, req.data(), req.size(), 0), static_cast<ssize_t>(req.size()));
    std::string out;
    char buf[4096];
    for (int i = 0; i < 200; ++i) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) {
        continue;
      }
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) {
        break;
      }
      out.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    return out;
  }
};

int status_of(const std::string& raw) { return raw.size() > 12 ? std::atoi(raw.c_str() + 9) : 0; }

json body_of(const std::string& raw) {
  const auto p = raw.find("\r\n\r\n");
  return json::parse(p == std::string::npos ? "" : raw.substr(p + 4), nullptr, false);
}

#define REQUIRE_FIXTURE() ASSERT_TRUE(mpi_test::fx().error.empty()) << mpi_test::fx().error

const std::string completion = R"({"prompt":"hello","max_tokens":2})";

TEST(openai_server, an_exception_in_a_handler_is_a_500_and_the_server_goes_on) {
  REQUIRE_FIXTURE();
  fixture_server s;
  s.backend.next.throw_on_submit = true;
  const auto raw = s.ask("/v1/completions", completion);
  EXPECT_EQ(status_of(raw), 500) << raw;
  EXPECT_EQ(body_of(raw)["error"]["code"], "internal_error") << raw;
  s.backend.next.throw_on_submit = false;
  EXPECT_EQ(status_of(s.ask("/v1/completions", completion)), 200);
  EXPECT_EQ(status_of(s.ask("/health", "")), 200);
  const auto metrics = s.ask("/metrics", "");
  EXPECT_NE(metrics.find("baton:request_rejected_total{reason=\"internal_error\"} 1"),
            std::string::npos) << metrics;
}

TEST(openai_server, typed_refusals_and_final_events_choose_the_status) {
  REQUIRE_FIXTURE();
  fixture_server s;
  struct row {
    script sc;
    int status;
  };
  const std::vector<row> rows = {
      {{false, refusal::queue_full, refusal::none, false}, 429},
      {{false, refusal::key_quota, refusal::none, false}, 429},
      {{false, refusal::stage_down, refusal::none, false}, 503},
      {{false, refusal::shutting_down, refusal::none, false}, 503},
      {{false, refusal::invalid, refusal::none, false}, 400},
      {{false, refusal::none, refusal::stage_down, true}, 503},
      {{false, refusal::none, refusal::internal, true}, 500},
      {{false, refusal::none, refusal::none, false}, 200},
  };
  for (const auto& r : rows) {
    s.backend.next = r.sc;
    const auto raw = s.ask("/v1/completions", completion);
    EXPECT_EQ(status_of(raw), r.status) << to_string(r.sc.why) << " / "
                                        << to_string(r.sc.final_kind) << ": " << raw;
    if (r.status == 429) {
      EXPECT_NE(raw.find("Retry-After: 3"), std::string::npos) << raw;
    }
  }
}

}  // namespace
}  // namespace baton
