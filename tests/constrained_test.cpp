// Constrained output through the actors (router → last stage) on the byte-vocabulary
// fixture: every constrained reply is one JSON document of its schema, also when
// max_tokens only just suffices and when the pipeline is resharded mid-reply (the new
// last stage rebuilds the grammar by replay: the tokens stay the same); unconstrained
// requests batched with constrained ones give the tokens they give alone; logit_bias
// moves the choice.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "actors/local_server.hpp"
#include "runtime/compute/engine.hpp"
#include "tests/byte_fixture.hpp"

namespace baton {
namespace {

using test::fixture;

const char* const k_schema =
    R"({"type":"object","properties":{"name":{"type":"string","maxLength":8},)"
    R"("n":{"type":"integer","minimum":0,"maximum":999},)"
    R"("tags":{"type":"array","items":{"enum":["a","b"]},"maxItems":3}},)"
    R"("required":["name","n","tags"],"additionalProperties":false})";

server_options options(int stages) {
  server_options o;
  o.n_stages = stages;
  o.n_threads = 2;
  o.serving.n_ctx = 512;
  o.serving.max_num_batched_tokens = 64;
  return o;
}

std::vector<int32_t> prompt(int i) {
  std::vector<int32_t> p = {256};
  for (int j = 0; j < 5 + (i * 7) % 23; ++j) {
    p.push_back((i * 31 + j * 17 + 3) % 256);
  }
  return p;
}

gen_request request(int i, int max_tokens, bool constrained) {
  gen_request r;
  r.prompt = prompt(i);
  r.max_tokens = max_tokens;
  r.sampling.temperature = 1.0f;
  r.sampling.top_k = 0;
  r.sampling.top_p = 1.0f;
  r.sampling.min_p = 0.0f;
  r.sampling.seed = 7000 + static_cast<uint64_t>(i);
  if (constrained) {
    r.constraint.json_schema = k_schema;
    r.constraint.max_tokens = max_tokens;
  } else {
    r.ignore_eos = true;
  }
  return r;
}

struct reply {
  std::vector<int32_t> tokens;
  std::string text;  // the byte tokens' bytes
  gen_event last;
};

reply drain(event_stream& s) {
  reply out;
  for (;;) {
    auto e = s.next(std::chrono::seconds(120));
    if (!e) {
      ADD_FAILURE() << "no event within 120 s";
      return out;
    }
    if (e->token >= 0) {
      out.tokens.push_back(e->token);
      if (e->token < 256) {
        out.text.push_back(static_cast<char>(e->token));
      }
    }
    if (e->finish != finish_reason::none) {
      out.last = *e;
      return out;
    }
  }
}

/// Whether `text` is a document of k_schema (checked apart from the grammar).
::testing::AssertionResult matches_schema(const std::string& text) {
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || j.size() != 3) {
    return ::testing::AssertionFailure() << "not the object asked for: " << text;
  }
  const auto& name = j["name"];
  const auto& n = j["n"];
  const auto& tags = j["tags"];
  if (!name.is_string() || !n.is_number_integer() || n.get<int64_t>() < 0 || n.get<int64_t>() > 999 ||
      !tags.is_array() || tags.size() > 3) {
    return ::testing::AssertionFailure() << "fields of the wrong kind: " << text;
  }
  for (const auto& t : tags) {
    if (t != "a" && t != "b") {
      return ::testing::AssertionFailure() << "a tag outside the enum: " << text;
    }
  }
  return ::testing::AssertionSuccess();
}

TEST(constrained, every_reply_of_a_random_model_is_a_document_of_its_schema) {
  auto srv = std::move(*local_server::create(fixture().m, fixture().tok, options(2)));
  std::vector<std::shared_ptr<event_stream>> streams;
  for (int i = 0; i < 12; ++i) {
    streams.push_back(srv->submit(request(i, 80, true)));
  }
  for (auto& s : streams) {
    const reply r = drain(*s);
    EXPECT_TRUE(matches_schema(r.text)) << r.last.error;
    EXPECT_NE(r.last.finish, finish_reason::error) << r.last.error;
  }
}

TEST(constrained, a_budget_that_only_just_suffices_still_closes_the_document) {
  // {"name":"","n":0,"tags":[]} is 27 bytes: each byte is a token of this vocabulary
  auto srv = std::move(*local_server::create(fixture().m, fixture().tok, options(1)));
  for (int budget : {27, 30, 40}) {
    for (int i = 0; i < 4; ++i) {
      const reply r = drain(*srv->submit(request(i, budget, true)));
      EXPECT_TRUE(matches_schema(r.text)) << "max_tokens " << budget;
      EXPECT_LE(static_cast<int>(r.tokens.size()), budget);
      if (budget > 27) {
        // room for the end-of-generation token too: the reply is not cut ("length")
        EXPECT_EQ(r.last.finish, finish_reason::stop) << "max_tokens " << budget;
      }
    }
  }
}

TEST(constrained, unconstrained_requests_beside_constrained_ones_give_their_tokens_alone) {
  std::vector<std::vector<int32_t>> alone;
  {
    auto srv = std::move(*local_server::create(fixture().m, fixture().tok, options(2)));
    for (int i = 0; i < 4; ++i) {
      alone.push_back(drain(*srv->submit(request(i, 24, false))).tokens);
    }
  }
  auto srv = std::move(*local_server::create(fixture().m, fixture().tok, options(2)));
  std::vector<std::shared_ptr<event_stream>> free, tied;
  for (int i = 0; i < 4; ++i) {
    free.push_back(srv->submit(request(i, 24, false)));
    tied.push_back(srv->submit(request(100 + i, 80, true)));
  }
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(drain(*free[static_cast<size_t>(i)]).tokens, alone[static_cast<size_t>(i)]) << i;
    EXPECT_TRUE(matches_schema(drain(*tied[static_cast<size_t>(i)]).text));
  }
}

std::vector<stage_setup> cpu_stages(std::vector<std::pair<int64_t, int64_t>> ranges) {
  std::vector<stage_setup> out;
  for (const auto& [first, last] : ranges) {
    out.push_back(stage_setup{0, first, last, 0, "cpu"});
  }
  return out;
}

TEST(constrained, a_reshard_mid_reply_rebuilds_the_grammar_by_replay_and_changes_no_token) {
  constexpr int n_req = 8;
  std::vector<std::vector<int32_t>> want;
  {
    auto srv = std::move(*local_server::create(fixture().m, fixture().tok, options(2)));
    std::vector<std::shared_ptr<event_stream>> s;
    for (int i = 0; i < n_req; ++i) {
      s.push_back(srv->submit(request(i, 80, true)));
    }
    for (auto& x : s) {
      want.push_back(drain(*x).tokens);
    }
  }
  auto srv = std::move(*local_server::create(fixture().m, fixture().tok, options(2)));
  std::vector<std::shared_ptr<event_stream>> s;
  for (int i = 0; i < n_req; ++i) {
    s.push_back(srv->submit(request(i, 80, true)));
  }
  // once some tokens are out, move the last stage's layers (a new last stage)
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (srv->snapshot().stats.generated_tokens < 8 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  auto r = srv->reshard(cpu_stages({{0, 1}, {1, 3}, {3, 4}}));
  ASSERT_TRUE(r) << r.err().message;
  for (int i = 0; i < n_req; ++i) {
    const reply got = drain(*s[static_cast<size_t>(i)]);
    EXPECT_EQ(got.tokens, want[static_cast<size_t>(i)]) << "request " << i;
    EXPECT_TRUE(matches_schema(got.text));
  }
}

TEST(constrained, logit_bias_moves_the_choice_and_a_ban_holds) {
  auto srv = std::move(*local_server::create(fixture().m, fixture().tok, options(1)));
  gen_request r = request(0, 12, false);
  r.sampling.temperature = 0.0f;
  r.constraint.bias_ids = {'x'};
  r.constraint.bias_values = {100.0f};
  const reply pushed = drain(*srv->submit(r));
  EXPECT_EQ(pushed.text, std::string(12, 'x'));
  gen_request g = request(0, 12, false);
  g.sampling.temperature = 0.0f;
  const reply plain = drain(*srv->submit(g));
  ASSERT_FALSE(plain.tokens.empty());
  g.constraint.bias_ids = {plain.tokens[0]};
  g.constraint.bias_values = {-100.0f};
  const reply banned = drain(*srv->submit(g));
  ASSERT_FALSE(banned.tokens.empty());
  EXPECT_NE(banned.tokens[0], plain.tokens[0]);
}

}  // namespace
}  // namespace baton
