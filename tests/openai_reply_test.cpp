// launch/http/openai_reply: the reply reader `baton client` and `baton bench serve` share,
// on sample replies and chunks as baton serve, vLLM and llama-server send them: the text
// of each endpoint's reply and stream chunk, usage, role and finish chunks without text,
// an error event after the 200, a chunk that is not JSON, GET /v1/models and error bodies.
#include <gtest/gtest.h>

#include <string>

#include "launch/http/openai_reply.hpp"

namespace baton::cli {
namespace {

TEST(openai_reply, completion_reply_text_and_usage) {
  const auto j = nlohmann::json::parse(R"({"id":"cmpl-1","object":"text_completion",
      "choices":[{"index":0,"text":" upon a time","finish_reason":"length"}],
      "usage":{"prompt_tokens":2,"completion_tokens":4,"total_tokens":6}})");
  const auto r = read_openai_reply(j, openai_route::completions);
  EXPECT_EQ(r.text, " upon a time");
  EXPECT_EQ(r.prompt_tokens, 2);
  EXPECT_EQ(r.completion_tokens, 4);
  EXPECT_EQ(r.usage["total_tokens"], 6);
}

TEST(openai_reply, chat_reply_reads_the_message_not_the_text) {
  const auto j = nlohmann::json::parse(R"({"object":"chat.completion",
      "choices":[{"index":0,"message":{"role":"assistant","content":"Hi."},"text":"no"}]})");
  EXPECT_EQ(read_openai_reply(j, openai_route::chat).text, "Hi.");
  EXPECT_EQ(read_openai_reply(j, openai_route::completions).text, "no");
  const auto r = read_openai_reply(j, openai_route::chat);
  EXPECT_TRUE(r.usage.is_null());
  EXPECT_EQ(r.prompt_tokens, -1);
  EXPECT_EQ(r.completion_tokens, -1);
}

TEST(openai_reply, replies_without_text_read_as_empty) {
  for (const char* body : {R"({})", R"({"choices":[]})", R"({"choices":{}})", R"({"choices":[3]})",
                           R"({"choices":[{"message":null}]})",
                           R"({"choices":[{"message":{"content":null}}]})",
                           R"({"choices":[{"message":{"content":7}}]})", R"([1,2])", R"("x")"}) {
    EXPECT_EQ(read_openai_reply(nlohmann::json::parse(body), openai_route::chat).text, "") << body;
  }
}

TEST(openai_reply, stream_chunks_of_both_endpoints) {
  auto c = parse_openai_chunk(R"({"choices":[{"index":0,"text":" w0","finish_reason":null}]})",
                              openai_route::completions);
  ASSERT_TRUE(c) << c.err().message;
  EXPECT_EQ(c->text, " w0");
  EXPECT_TRUE(c->usage.is_null());

  // chat: the role chunk carries no text, the deltas do, the last chunk carries usage
  c = parse_openai_chunk(R"({"choices":[{"index":0,"delta":{"role":"assistant"}}]})",
                         openai_route::chat);
  ASSERT_TRUE(c) << c.err().message;
  EXPECT_EQ(c->text, "");
  c = parse_openai_chunk(R"({"choices":[{"index":0,"delta":{"content":"Hel"}}]})",
                         openai_route::chat);
  ASSERT_TRUE(c) << c.err().message;
  EXPECT_EQ(c->text, "Hel");
  c = parse_openai_chunk(R"({"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3}})",
                         openai_route::chat);
  ASSERT_TRUE(c) << c.err().message;
  EXPECT_EQ(c->text, "");
  EXPECT_EQ(c->prompt_tokens, 5);
  EXPECT_EQ(c->completion_tokens, 3);
  EXPECT_EQ(c->usage["completion_tokens"], 3);

  // a usage count of another type reads as unknown, not as a crash
  c = parse_openai_chunk(R"({"usage":{"prompt_tokens":"5","completion_tokens":null}})",
                         openai_route::chat);
  ASSERT_TRUE(c) << c.err().message;
  EXPECT_EQ(c->prompt_tokens, -1);
  EXPECT_EQ(c->completion_tokens, -1);
  EXPECT_TRUE(c->usage.is_object());
}

TEST(openai_reply, malformed_chunk_is_a_clear_error) {
  auto c = parse_openai_chunk(R"({"choices":[{"text":"cut)", openai_route::completions);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.err().message, R"(a streamed event is not a JSON object: {"choices":[{"text":"cut)");
  c = parse_openai_chunk("[1, 2]", openai_route::chat);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.err().message, "a streamed event is not a JSON object: [1, 2]");
  // only the first 80 bytes of a long one
  c = parse_openai_chunk(std::string(300, 'x'), openai_route::chat);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.err().message, "a streamed event is not a JSON object: " + std::string(80, 'x'));
}

TEST(openai_reply, error_event_after_the_200_carries_the_servers_message) {
  auto c = parse_openai_chunk(
      R"({"error":{"message":"stage 1 is down","type":"server_error","code":503}})",
      openai_route::completions);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.err().message, "stage 1 is down");
  c = parse_openai_chunk(R"({"error":null})", openai_route::chat);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.err().message, R"({"error":null})");
}

TEST(openai_reply, first_model_of_v1_models) {
  auto id = first_model_id(nlohmann::json::parse(
      R"({"object":"list","data":[{"id":"llama-3.2-1b","object":"model"},{"id":"b"}]})"));
  ASSERT_TRUE(id) << id.err().message;
  EXPECT_EQ(*id, "llama-3.2-1b");
  for (const char* body : {R"({})", R"({"data":[]})", R"({"data":[{"id":3}]})", R"({"data":[1]})",
                           R"([])"}) {
    id = first_model_id(nlohmann::json::parse(body));
    ASSERT_FALSE(id) << body;
    EXPECT_EQ(id.err().message, "GET /v1/models lists no model with an 'id'; give --model");
  }
}

TEST(openai_reply, error_bodies) {
  EXPECT_EQ(openai_error_message(R"({"error":{"message":"Incorrect API key provided."}})"),
            "Incorrect API key provided.");
  EXPECT_EQ(openai_error_message(R"({"error":"queue full"})"), "queue full");
  EXPECT_EQ(openai_error_message(R"({"object":"error","message":"old vLLM"})"), "old vLLM");
  EXPECT_EQ(openai_error_message("  <html>Bad Gateway</html>\n"), "<html>Bad Gateway</html>");
  EXPECT_EQ(openai_error_message(std::string(250, 'e')), std::string(200, 'e') + "...");
  EXPECT_EQ(openai_error_message(" \n"), "");
}

}  // namespace
}  // namespace baton::cli
