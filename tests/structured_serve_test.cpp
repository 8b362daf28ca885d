// Structured output through `baton serve` on the demo model (random weights): replies of
// response_format json_object / json_schema parse, streamed or not, also when max_tokens
// only just suffices; strict refusals name the keyword and its pointer, lenient schemas
// answer with a Warning header; and the hostile cases — wrong types, schemas that nest
// too deep, refer to themselves, hold regexes too large, logit_bias junk — get a 400 and
// leave the server healthy.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "tests/serve_util.hpp"

namespace baton {
namespace {

using nlohmann::json;

std::string chat(const json& response_format, int max_tokens = 120, bool stream = false,
                 json extra = json::object()) {
  json body = {{"messages", {{{"role", "user"}, {"content", "Give me a record."}}}},
               {"max_tokens", max_tokens},
               {"seed", 5},
               {"stream", stream}};
  if (!response_format.is_null()) {
    body["response_format"] = response_format;
  }
  for (auto it = extra.begin(); it != extra.end(); ++it) {
    body[it.key()] = it.value();
  }
  return body.dump();
}

json schema_format(const json& schema, bool strict) {
  return {{"type", "json_schema"},
          {"json_schema", {{"name", "x"}, {"schema", schema}, {"strict", strict}}}};
}

const json k_person = json::parse(R"({"type":"object","properties":{
  "name":{"type":"string","maxLength":12},"age":{"type":"integer","minimum":0,"maximum":150},
  "tags":{"type":"array","items":{"enum":["a","b","c"]},"maxItems":4}},
  "required":["name","age","tags"],"additionalProperties":false})");

/// The content of a non-streamed chat reply, or of a stream's deltas joined.
std::string content_of(const http_result& r, bool stream) {
  if (!stream) {
    const auto j = json::parse(r.body, nullptr, false);
    if (j.is_discarded() || !j.contains("choices")) {
      return "";
    }
    const auto& c = j["choices"][0]["message"]["content"];
    return c.is_string() ? c.get<std::string>() : "";
  }
  std::string out;
  size_t at = 0;
  while ((at = r.body.find("data: ", at)) != std::string::npos) {
    const size_t end = r.body.find("\n\n", at);
    const std::string data = r.body.substr(at + 6, end - at - 6);
    at = end;
    const auto j = json::parse(data, nullptr, false);
    if (!j.is_discarded() && j.contains("choices") && !j["choices"].empty()) {
      const auto& d = j["choices"][0]["delta"];
      if (d.contains("content") && d["content"].is_string()) {
        out += d["content"].get<std::string>();
      }
    }
  }
  return out;
}

bool person_ok(const std::string& text) {
  const auto j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || j.size() != 3 || !j["name"].is_string() ||
      !j["age"].is_number_integer() || !j["tags"].is_array()) {
    return false;
  }
  return j["name"].get<std::string>().size() <= 12 * 4 && j["age"].get<int64_t>() >= 0 &&
         j["age"].get<int64_t>() <= 150 && j["tags"].size() <= 4;
}

TEST(structured_serve, replies_parse_streamed_or_not_and_within_a_tight_budget) {
  ASSERT_TRUE(fx().error.empty()) << fx().error;
  server_process s("");
  ASSERT_GT(s.port(), 0) << s.log();
  // json_object: any object
  auto r = curl(s, "/v1/chat/completions", chat({{"type", "json_object"}}));
  ASSERT_EQ(r.status, 200) << r.body;
  const auto obj = json::parse(content_of(r, false), nullptr, false);
  EXPECT_TRUE(obj.is_object()) << r.body;
  for (bool stream : {false, true}) {
    for (int budget : {26, 40, 200}) {  // {"name":"","age":0,"tags":[]} is 29 bytes
      r = curl(s, "/v1/chat/completions", chat(schema_format(k_person, true), budget, stream));
      if (budget < 29) {
        EXPECT_EQ(r.status, 400) << r.body;
        EXPECT_NE(r.body.find("max_tokens (26)"), std::string::npos) << r.body;
        EXPECT_NE(r.body.find("29"), std::string::npos) << r.body;
        continue;
      }
      ASSERT_EQ(r.status, 200) << r.body;
      EXPECT_TRUE(person_ok(content_of(r, stream)))
          << "stream " << stream << " max_tokens " << budget << ": " << r.body;
    }
  }
  // completions take it too, and vLLM's guided_json
  json body = {{"prompt", "x"}, {"max_tokens", 60}, {"guided_json", k_person}, {"seed", 3}};
  r = curl(s, "/v1/completions", body.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(person_ok(json::parse(r.body)["choices"][0]["text"].get<std::string>())) << r.body;
  EXPECT_EQ(s.stop(), 0) << s.log();
}

TEST(structured_serve, strict_refuses_by_keyword_and_pointer_and_lenient_warns) {
  ASSERT_TRUE(fx().error.empty()) << fx().error;
  server_process s("");
  ASSERT_GT(s.port(), 0) << s.log();
  const json with_not = json::parse(R"({"type":"object","properties":{"a":{"type":"string",
      "not":{"const":"x"}}},"required":["a"]})");
  auto r = curl(s, "/v1/chat/completions", chat(schema_format(with_not, true)));
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("'not' at /properties/a"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("\"param\":\"response_format\""), std::string::npos) << r.body;
  r = curl(s, "/v1/chat/completions", chat(schema_format(with_not, false)));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.headers.find("Warning: 299 baton"), std::string::npos) << r.headers;
  EXPECT_NE(r.headers.find("'not' at /properties/a"), std::string::npos) << r.headers;
  const auto j = json::parse(content_of(r, false), nullptr, false);
  EXPECT_TRUE(j.is_object() && j.contains("a") && j["a"].is_string()) << r.body;
  // streamed: the header is there too
  r = curl(s, "/v1/chat/completions", chat(schema_format(with_not, false), 60, true));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.headers.find("Warning: 299 baton"), std::string::npos) << r.headers;
  EXPECT_EQ(s.stop(), 0) << s.log();
}

constexpr const char* k_recursive_all_of =
    R"({"$defs":{"A":{"type":"object","properties":{"c":{"$ref":"#/$defs/A"}}},)"
    R"("B":{"type":"object","properties":{"c":{"$ref":"#/$defs/B"}}}},)"
    R"("allOf":[{"$ref":"#/$defs/A"},{"$ref":"#/$defs/B"}]})";

TEST(structured_serve, hostile_schemas_and_biases_get_a_400_and_the_server_stays_up) {
  ASSERT_TRUE(fx().error.empty()) << fx().error;
  server_process s("");
  ASSERT_GT(s.port(), 0) << s.log();
  std::string deep = "{\"type\":\"array\",\"items\":";
  for (int i = 0; i < 5000; ++i) {
    deep += "{\"type\":\"array\",\"items\":";
  }
  deep += "{}" + std::string(5001, '}');
  json many = {{"type", "object"}, {"properties", json::object()}};
  for (int i = 0; i < 20000; ++i) {
    many["properties"]["p" + std::to_string(i)] = {{"type", "string"}, {"pattern", "^[a-z]{1,8}$"}};
  }
  const std::vector<std::pair<std::string, std::string>> cases = {
      {chat("json"), "response_format"},
      {chat({{"type", 5}}), "response_format.type"},
      {chat({{"type", "xml"}}), "response_format.type"},
      {chat({{"type", "json_schema"}}), "response_format.json_schema"},
      {chat({{"type", "json_schema"}, {"json_schema", {{"schema", 5}}}}),
       "response_format.json_schema.schema"},
      {chat({{"type", "json_schema"}, {"json_schema", {{"schema", k_person}, {"strict", "yes"}}}}),
       "response_format.json_schema.strict"},
      {chat(schema_format(json::parse(R"({"type":["string",5]})"), true)), "response_format"},
      {chat(schema_format(json::parse(R"({"$ref":"#"})"), true)), "response_format"},
      {chat(schema_format(json::parse(R"({"$ref":"http://evil.example/x.json"})"), true)),
       "response_format"},
      {chat(schema_format(json::parse(R"({"type":"string","pattern":"a{1,1000000}"})"), true)),
       "response_format"},
      {chat(schema_format(json::parse(R"({"type":"string","pattern":"(?<=a)b"})"), true)),
       "response_format"},
      // two recursive schemas met through allOf, strict or not (once a stack overflow)
      {chat(schema_format(json::parse(k_recursive_all_of), false)), "response_format"},
      {chat(schema_format(json::parse(k_recursive_all_of), true)), "response_format"},
      {chat(nullptr, 20, false, {{"logit_bias", {{"abc", 1}}}}), "logit_bias"},
      {chat(nullptr, 20, false, {{"logit_bias", {{"5", 500}}}}), "logit_bias"},
      {chat(nullptr, 20, false, {{"logit_bias", {{"999999999", 1}}}}), "logit_bias"},
      {chat(nullptr, 20, false, {{"logit_bias", {{"5", "x"}}}}), "logit_bias"},
      {chat(nullptr, 20, false, {{"logit_bias", json::array({1, 2})}}), "logit_bias"},
      {chat({{"type", "json_object"}}, 20, false, {{"guided_json", k_person}}), "guided_json"},
  };
  for (const auto& [body, param] : cases) {
    const auto r = curl(s, "/v1/chat/completions", body);
    EXPECT_EQ(r.status, 400) << body.substr(0, 200) << "\n" << r.body;
    EXPECT_NE(r.body.find("\"param\":\"" + param + "\""), std::string::npos)
        << body.substr(0, 200) << "\n" << r.body;
  }
  // too deep: refused by the server's JSON limits or the schema compiler, never a crash
  auto r = curl(s, "/v1/chat/completions",
                "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":"
                "{\"type\":\"json_schema\",\"json_schema\":{\"schema\":" + deep + "}}}");
  EXPECT_EQ(r.status, 400) << r.body.substr(0, 300);
  // a large schema: answered (either way) within the test's time, and the server stays up
  r = curl(s, "/v1/chat/completions", chat(schema_format(many, true), 40), "--max-time 120");
  EXPECT_TRUE(r.status == 200 || r.status == 400 || r.status == 413) << r.status << r.body.substr(0, 300);
  r = curl(s, "/health");
  EXPECT_EQ(r.status, 200) << s.log();
  EXPECT_EQ(s.stop(), 0) << s.log();
}

}  // namespace
}  // namespace baton
