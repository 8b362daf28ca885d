// Tool calling's request side and reply reading (unit, launch/serve/tool_calls): every bad
// `tools`, `tool_choice`, `parallel_tool_calls`, assistant `tool_calls` and `tool`
// message is a 400 naming its field; the schema a required or named call is constrained
// by; the exact prompt text of a small conversation with a tool, an earlier call and its
// result (Meta's Llama 3.1 JSON tool format); tool_choice "none" showing no tools; and
// which replies read back as a call.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "launch/serve/openai_api.hpp"
#include "launch/serve/tool_calls.hpp"
#include "runtime/text/chat_template.hpp"

namespace {

using baton::chat_message;
using baton::api::api_error;
using baton::api::completion_request;
using baton::api::tool_choice_mode;
using baton::api::tool_function;
using nlohmann::json;

json weather_tool() {
  return {{"type", "function"},
          {"function",
           {{"name", "get_weather"},
            {"description", "Current weather"},
            {"parameters",
             {{"type", "object"},
              {"properties", {{"city", {{"type", "string"}}}}},
              {"required", {"city"}}}}}}};
}

json tool_named(const std::string& name) {
  return {{"type", "function"}, {"function", {{"name", name}}}};
}

json chat_with_tools(json tools = json::array({weather_tool()})) {
  return {{"messages", json::array({{{"role", "user"}, {"content", "Weather in Paris?"}}})},
          {"tools", std::move(tools)}};
}

std::variant<completion_request, api_error> parse(const json& body) {
  std::variant<completion_request, api_error> out = api_error{};
  EXPECT_NO_THROW(out = baton::api::parse_request(body, true)) << body.dump().substr(0, 300);
  return out;
}

completion_request accepted(const json& body) {
  auto r = parse(body);
  if (auto* e = std::get_if<api_error>(&r)) {
    ADD_FAILURE() << "refused: " << body.dump().substr(0, 300) << ": " << e->message;
    return {};
  }
  return std::get<completion_request>(r);
}

api_error refused(const json& body) {
  auto r = parse(body);
  if (auto* e = std::get_if<api_error>(&r)) {
    EXPECT_EQ(e->status, 400);
    EXPECT_NO_THROW((void)baton::api::error_json(*e).dump());
    return *e;
  }
  ADD_FAILURE() << "accepted: " << body.dump().substr(0, 300);
  return {};
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

/// A value nested `depth` arrays deep.
json nested(size_t depth) {
  json v = 1;
  for (size_t i = 0; i < depth; ++i) {
    v = json::array({std::move(v)});
  }
  return v;
}

}  // namespace

TEST(ToolCalls, ToolsAndToolChoiceAreRead) {
  json body = chat_with_tools(json::array({weather_tool(), tool_named("noop")}));
  auto r = accepted(body);
  ASSERT_EQ(r.tools.size(), 2u);
  EXPECT_EQ(r.tools[0].name, "get_weather");
  EXPECT_EQ(r.tools[0].description, "Current weather");
  EXPECT_EQ(json::parse(r.tools[0].parameters), weather_tool()["function"]["parameters"]);
  EXPECT_EQ(r.tools[1].parameters, "{}");
  EXPECT_EQ(r.tool_choice, tool_choice_mode::automatic);
  EXPECT_TRUE(r.parallel_tool_calls);
  EXPECT_TRUE(r.json_schema.empty()) << "auto constrains nothing";
  EXPECT_TRUE(baton::api::tools_offered(r));
  body["tool_choice"] = "none";
  body["parallel_tool_calls"] = false;
  r = accepted(body);
  EXPECT_EQ(r.tool_choice, tool_choice_mode::none);
  EXPECT_FALSE(r.parallel_tool_calls);
  EXPECT_FALSE(baton::api::tools_offered(r));
  body["tool_choice"] = {{"type", "function"}, {"function", {{"name", "noop"}}}};
  r = accepted(body);
  EXPECT_EQ(r.tool_choice, tool_choice_mode::named);
  EXPECT_EQ(r.tool_choice_name, "noop");
  // a function may be called "auto": the named form is not the string
  body["tools"].push_back(tool_named("auto"));
  body["tool_choice"]["function"]["name"] = "auto";
  r = accepted(body);
  EXPECT_EQ(r.tool_choice, tool_choice_mode::named);
  EXPECT_EQ(r.tool_choice_name, "auto");
  // no tools: "auto" and "none" ask for nothing; /v1/completions does not read tools
  json plain = {{"messages", json::array({{{"role", "user"}, {"content", "hi"}}})},
                {"tools", json::array()}, {"tool_choice", "auto"}};
  EXPECT_FALSE(baton::api::tools_offered(accepted(plain)));
  json completion = {{"prompt", "hi"}, {"tools", 5}, {"tool_choice", {{"x", 1}}}};
  auto c = baton::api::parse_request(completion, false);
  EXPECT_TRUE(std::holds_alternative<completion_request>(c));
}

TEST(ToolCalls, EveryBadFieldIsA400NamingIt) {
  struct row {
    json body;
    std::string param;
    std::string says;  ///< a part of the message
  };
  const auto with = [](const char* key, json value, json tools = json::array({weather_tool()})) {
    json b = chat_with_tools(std::move(tools));
    b[key] = std::move(value);
    return b;
  };
  json many = json::array();
  for (int i = 0; i < 129; ++i) {
    many.push_back(tool_named(std::string("f").append(std::to_string(i))));
  }
  json deep = weather_tool();
  deep["function"]["parameters"] = {{"type", "object"}, {"default", nested(64)}};
  json bad_params = weather_tool();
  bad_params["function"]["parameters"] = json::array();
  json bad_description = weather_tool();
  bad_description["function"]["description"] = 5;
  json bad_strict = weather_tool();
  bad_strict["function"]["strict"] = "yes";
  json retrieval = weather_tool();
  retrieval["type"] = "retrieval";
  const std::vector<row> rows = {
      {with("tools", json::object()), "tools", "must be a list"},
      {with("tools", json::array({5})), "tools[0]", "must be {\"type\": \"function\""},
      {with("tools", json::array({weather_tool(), retrieval})), "tools[1].type", "'retrieval'"},
      {with("tools", json::array({{{"type", "function"}}})), "tools[0].function", "nothing"},
      {with("tools", json::array({tool_named("a b")})), "tools[0].function.name", "'a b'"},
      {with("tools", json::array({tool_named("")})), "tools[0].function.name", "1 to 64"},
      {with("tools", json::array({tool_named(std::string(65, 'x'))})), "tools[0].function.name",
       "1 to 64"},
      {with("tools", json::array({tool_named("caf\xC3\xA9")})), "tools[0].function.name",
       "letters, digits"},
      {with("tools", json::array({{{"type", "function"}, {"function", {{"name", 5}}}}})),
       "tools[0].function.name", "got 5"},
      {with("tools", json::array({weather_tool(), weather_tool()})), "tools[1].function.name",
       "tools[0]'s name too"},
      {with("tools", json::array({bad_params})), "tools[0].function.parameters",
       "JSON Schema object"},
      {with("tools", json::array({bad_description})), "tools[0].function.description",
       "must be a string"},
      {with("tools", json::array({bad_strict})), "tools[0].function.strict", "boolean"},
      {with("tools", many), "tools", "129 entries; at most 128"},
      {with("tools", json::array({deep})), "tools[0].function.parameters", "deeper than 64"},
      {with("tool_choice", "sometimes"), "tool_choice", "'sometimes'"},
      {with("tool_choice", 5), "tool_choice", "got 5"},
      {with("tool_choice", {{"type", "function"}}), "tool_choice.function.name",
       "got nothing"},
      {with("tool_choice", {{"type", "retrieval"}, {"function", {{"name", "get_weather"}}}}),
       "tool_choice.type", "'retrieval'"},
      {with("tool_choice", {{"type", "function"}, {"function", {{"name", "get_time"}}}}),
       "tool_choice.function.name", "'get_time' is not one of the request's 'tools'"},
      {with("tool_choice", "required", json::array()), "tool_choice", "needs 'tools'"},
      {with("parallel_tool_calls", "yes"), "parallel_tool_calls", "boolean"},
      {[&] {
         json b = with("tool_choice", "required");
         b["response_format"] = {{"type", "json_object"}};
         return b;
       }(),
       "tool_choice", "without response_format"},
      {[&] {
         json b = with("tool_choice", {{"type", "function"}, {"function", {{"name", "get_weather"}}}});
         b["guided_json"] = {{"type", "object"}};
         return b;
       }(),
       "tool_choice", "constrains the reply to a tool call"},
      // the legacy fields stay refused
      {with("functions", json::array({{{"name", "f"}}})), "functions", "not supported"},
  };
  for (const auto& r : rows) {
    const api_error e = refused(r.body);
    EXPECT_EQ(e.param, r.param) << r.body.dump().substr(0, 300) << ": " << e.message;
    EXPECT_TRUE(contains(e.message, r.says)) << e.message;
    const std::string quoted = "'" + r.param;  // the message names the field it refuses
    EXPECT_TRUE(contains(e.message, quoted + "'")) << e.message;
  }
  // 64 levels are fine
  deep["function"]["parameters"] = {{"type", "object"}, {"default", nested(63)}};
  (void)accepted(with("tools", json::array({deep})));
}

TEST(ToolCalls, ToolMessagesAndEarlierCallsAreCheckedByIndex) {
  const auto conversation = [](json assistant, json tool = nullptr) {
    json m = json::array({{{"role", "user"}, {"content", "Weather in Paris?"}}, std::move(assistant)});
    if (!tool.is_null()) {
      m.push_back(std::move(tool));
    }
    return json{{"messages", std::move(m)}};
  };
  const auto call = [](json arguments) {
    return json{{"id", "call_1"},
                {"type", "function"},
                {"function", {{"name", "get_weather"}, {"arguments", std::move(arguments)}}}};
  };
  const auto assistant = [](json calls) {
    return json{{"role", "assistant"}, {"content", nullptr}, {"tool_calls", std::move(calls)}};
  };
  json deep_args = {{"a", nested(70)}};
  const std::vector<std::tuple<json, std::string, std::string>> rows = {
      {conversation(assistant("call")), "messages[1].tool_calls", "must be a list"},
      {conversation(assistant(json::array({call("{}"), call("{}")}))), "messages[1].tool_calls",
       "has 2 calls"},
      {conversation(assistant(json::array({5}))), "messages[1].tool_calls[0]", "got 5"},
      {conversation(assistant(json::array({{{"type", "function"}, {"function", json::object()}}}))),
       "messages[1].tool_calls[0].function.name", "got nothing"},
      {conversation(assistant(json::array({call("not json")}))),
       "messages[1].tool_calls[0].function.arguments", "JSON object as text"},
      {conversation(assistant(json::array({call("[1]")}))),
       "messages[1].tool_calls[0].function.arguments", "JSON object"},
      {conversation(assistant(json::array({call(5)}))),
       "messages[1].tool_calls[0].function.arguments", "got 5"},
      {conversation(assistant(json::array({call(deep_args.dump())}))),
       "messages[1].tool_calls[0].function.arguments", "deeper than 64"},
      {conversation(assistant(json::array({call(deep_args)}))),
       "messages[1].tool_calls[0].function.arguments", "deeper than 64"},
      {conversation({{"role", "tool"}, {"tool_call_id", 7}, {"content", "21"}}),
       "messages[1].tool_call_id", "must be a string"},
      {conversation({{"role", "tool"}, {"content", 7}}), "messages[1].content", "got 7"},
  };
  for (const auto& [body, param, says] : rows) {
    const api_error e = refused(body);
    EXPECT_EQ(e.param, param) << body.dump().substr(0, 300) << ": " << e.message;
    EXPECT_TRUE(contains(e.message, says)) << e.message;
  }
  // arguments as text, as an object (some clients), empty text; no calls: the content
  for (const json& args : {json("{\"city\": \"Paris\"}"), json{{"city", "Paris"}}, json("")}) {
    const auto r = accepted(conversation(assistant(json::array({call(args)})),
                                         {{"role", "tool"}, {"tool_call_id", "call_1"},
                                          {"content", "21 C"}}));
    ASSERT_EQ(r.messages.size(), 3u);
    EXPECT_EQ(r.messages[1].role, "assistant");
    EXPECT_EQ(r.messages[1].content,
              args == "" ? R"({"name": "get_weather", "parameters": {}})"
                         : R"({"name": "get_weather", "parameters": {"city": "Paris"}})");
    EXPECT_EQ(r.messages[2].role, "ipython");
    EXPECT_EQ(r.messages[2].content, "21 C");
  }
  json no_calls = assistant(json::array());
  no_calls["content"] = "Sunny.";
  EXPECT_EQ(accepted(conversation(no_calls)).messages[1].content, "Sunny.");
}

TEST(ToolCalls, ARequiredOrNamedCallIsConstrainedByItsSchema) {
  json body = chat_with_tools(json::array({weather_tool(), tool_named("noop")}));
  body["tool_choice"] = {{"type", "function"}, {"function", {{"name", "get_weather"}}}};
  auto r = accepted(body);
  const json weather_call = {
      {"type", "object"},
      {"properties",
       {{"name", {{"const", "get_weather"}}},
        {"parameters", weather_tool()["function"]["parameters"]}}},
      {"required", {"name", "parameters"}},
      {"additionalProperties", false}};
  EXPECT_EQ(json::parse(r.json_schema), weather_call);
  EXPECT_FALSE(r.schema_strict);
  // required: any of the tools; one without parameters takes an empty object
  body["tool_choice"] = "required";
  body["tools"][1]["function"]["strict"] = true;
  r = accepted(body);
  json noop_call = weather_call;
  noop_call["properties"]["name"]["const"] = "noop";
  noop_call["properties"]["parameters"] = {{"type", "object"},
                                           {"properties", json::object()},
                                           {"additionalProperties", false}};
  EXPECT_EQ(json::parse(r.json_schema), json({{"anyOf", {weather_call, noop_call}}}));
  EXPECT_TRUE(r.schema_strict) << "one strict tool makes the constraint strict";
  // a required call with one tool: that tool's schema, without anyOf
  json one = chat_with_tools();
  one["tool_choice"] = "required";
  r = accepted(one);
  EXPECT_EQ(json::parse(r.json_schema), weather_call);
}

TEST(ToolCalls, ThePromptIsMetasLlama31JsonToolFormat) {
  json body = chat_with_tools();
  body["messages"] = json::array(
      {{{"role", "system"}, {"content", "Be brief."}},
       {{"role", "user"}, {"content", "  Weather in Paris?\n"}},
       {{"role", "assistant"},
        {"content", nullptr},
        {"tool_calls",
         {{{"id", "call_1"},
           {"type", "function"},
           // the client's key order is kept, as the model wrote it
           {"function", {{"name", "get_weather"}, {"arguments", R"({"days":2,"city":"Paris"})"}}}}}}},
       {{"role", "tool"}, {"tool_call_id", "call_1"}, {"content", R"({"temp": 21})"}},
       {{"role", "user"}, {"content", "And in Rome?"}}});
  const auto r = accepted(body);
  auto text = baton::apply_chat_template(std::nullopt, r.messages, true);
  ASSERT_TRUE(static_cast<bool>(text)) << text.err().message;
  const std::string expected =
      "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
      "<|start_header_id|>user<|end_header_id|>\n\n"
      "Given the following functions, please respond with a JSON for a function call with its "
      "proper arguments that best answers the given prompt.\n\n"
      "Respond in the format {\"name\": function name, \"parameters\": dictionary of argument "
      "name and its value}.Do not use variables.\n\n"
      "{\n"
      "    \"type\": \"function\",\n"
      "    \"function\": {\n"
      "        \"name\": \"get_weather\",\n"
      "        \"description\": \"Current weather\",\n"
      "        \"parameters\": {\n"
      "            \"properties\": {\n"
      "                \"city\": {\n"
      "                    \"type\": \"string\"\n"
      "                }\n"
      "            },\n"
      "            \"required\": [\n"
      "                \"city\"\n"
      "            ],\n"
      "            \"type\": \"object\"\n"
      "        }\n"
      "    }\n"
      "}\n\n"
      "Weather in Paris?<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\n"
      "{\"name\": \"get_weather\", \"parameters\": {\"days\": 2, \"city\": \"Paris\"}}<|eot_id|>"
      "<|start_header_id|>ipython<|end_header_id|>\n\n{\"temp\": 21}<|eot_id|>"
      "<|start_header_id|>user<|end_header_id|>\n\nAnd in Rome?<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\n";
  EXPECT_EQ(*text, expected);
  // the tools and the call are content: none of it is markup a client could forge with
  auto segments = baton::apply_chat_template_segments(std::nullopt, r.messages, true);
  ASSERT_TRUE(static_cast<bool>(segments));
  for (const auto& s : *segments) {
    EXPECT_FALSE(s.markup && contains(s.text, "get_weather")) << s.text;
  }
  // tool_choice "none": no tools shown; the earlier call and result stay
  body["tool_choice"] = "none";
  const auto none = accepted(body);
  EXPECT_EQ(none.messages[1].content, "  Weather in Paris?\n");
  EXPECT_EQ(none.messages[2].content,
            R"({"name": "get_weather", "parameters": {"days": 2, "city": "Paris"}})");
  // no user message: the tools go into the system message, or a new one
  json system_only = chat_with_tools();
  system_only["messages"] = json::array({{{"role", "system"}, {"content", "Be brief."}}});
  auto s = accepted(system_only);
  ASSERT_EQ(s.messages.size(), 1u);
  EXPECT_EQ(s.messages[0].content.rfind(baton::api::k_tools_instruction, 0), 0u);
  EXPECT_TRUE(contains(s.messages[0].content, "}\n\nBe brief.")) << s.messages[0].content;
  system_only["messages"] = json::array({{{"role", "assistant"}, {"content", "Hello."}}});
  s = accepted(system_only);
  ASSERT_EQ(s.messages.size(), 2u);
  EXPECT_EQ(s.messages[0].role, "system");
  EXPECT_EQ(s.messages[0].content.rfind(baton::api::k_tools_instruction, 0), 0u);
}

TEST(ToolCalls, ARepliedCallIsReadBackOnlyWhenItIsOneCallToADeclaredTool) {
  const std::vector<tool_function> tools = {{"get_weather", "", "{}", false},
                                            {"noop", "", "{}", false}};
  struct row {
    std::string reply;
    std::string name;       ///< "" when the reply is content
    std::string arguments;
  };
  const std::vector<row> rows = {
      {R"({"name": "get_weather", "parameters": {"city": "Paris", "days": 2}})", "get_weather",
       R"({"city":"Paris","days":2})"},
      {" \n{\"name\":\"get_weather\",\"arguments\":{\"days\":2,\"city\":\"Paris\"}}\n ",
       "get_weather", R"({"days":2,"city":"Paris"})"},
      {R"({"type": "function", "name": "noop", "parameters": {}})", "noop", "{}"},
      {R"({"name": "get_time", "parameters": {}})", "", ""},              // not declared
      {R"({"name": "noop"})", "", ""},                                    // no arguments
      {R"({"name": "noop", "parameters": "{}"})", "", ""},                // not an object
      {R"({"name": "noop", "parameters": {}, "arguments": {}})", "", ""},  // both
      {R"({"name": "noop", "parameters": {}, "why": "x"})", "", ""},      // another key
      {R"({"name": "noop", "parameters": {}} and more)", "", ""},
      {R"({"name": "noop", "parameters": {}}; {"name": "noop", "parameters": {}})", "", ""},
      {R"({"name": "noop", "parameters": {)", "", ""},                    // cut off
      {R"(Sure: {"name": "noop", "parameters": {}})", "", ""},
      {R"(["noop"])", "", ""},
      {"", "", ""},
      {"{\"name\": \"noop\", \"parameters\": {\"a\": " + nested(80).dump() + "}}", "", ""},
  };
  for (const auto& r : rows) {
    const auto call = baton::api::parse_tool_call(r.reply, tools);
    if (r.name.empty()) {
      EXPECT_FALSE(call) << r.reply;
      continue;
    }
    ASSERT_TRUE(call) << r.reply;
    EXPECT_EQ(call->name, r.name);
    EXPECT_EQ(call->arguments, r.arguments);
  }
  const std::string id = baton::api::new_tool_call_id();
  EXPECT_EQ(id.size(), 29u);
  EXPECT_EQ(id.rfind("call_", 0), 0u);
  EXPECT_NE(id, baton::api::new_tool_call_id());
  const json j = baton::api::tool_call_json({"noop", "{}"}, id);
  EXPECT_EQ(j, json({{"id", id},
                     {"type", "function"},
                     {"function", {{"name", "noop"}, {"arguments", "{}"}}}}));
}
