// OpenAI tool calling in Llama 3.1's JSON format, apart from any HTTP: a chat request's
// `tools`, `tool_choice` and `parallel_tool_calls` read and checked; the tools shown to
// the model as Meta's Llama 3.1 chat template does for JSON tool calling (its
// instruction, then each definition as indented JSON, in the first user message); an
// assistant's earlier call written back as the `{"name": ..., "parameters": ...}` turn
// the model makes, a tool's result as an `ipython` turn; the JSON Schema that constrains
// a required or named call (runtime/grammar masks the sampled tokens with it); and a
// finished reply read back as a call. All of it is content of the conversation, never
// the template's markup: a tool's JSON or result cannot forge a turn. openai_server
// builds the `tool_calls` replies and stream chunks from what this file parses. Nothing
// here throws on any JSON value, and nothing recurses over a client's JSON deeper than
// k_max_json_depth.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "launch/serve/openai_api.hpp"

namespace baton::api {

inline constexpr size_t k_max_tools = 128;  ///< entries of `tools` (OpenAI's limit)
/// Nesting of a tool's parameters schema or of a call's arguments: they are written out
/// recursively, so a client may not nest them a million deep.
inline constexpr size_t k_max_json_depth = 64;

/// Meta's instruction before the tool definitions, as its Llama 3.1 chat template writes
/// it (without a space after "value}.": the template's text, not the model card's prose).
inline constexpr std::string_view k_tools_instruction =
    "Given the following functions, please respond with a JSON for a function call with "
    "its proper arguments that best answers the given prompt.\n\n"
    "Respond in the format {\"name\": function name, \"parameters\": dictionary of argument "
    "name and its value}.Do not use variables.\n\n";

/// Reads `tools`, `tool_choice` and `parallel_tool_calls` of a chat body into `r`, whose
/// messages are parsed already. With tools offered (tool_choice other than "none") their
/// definitions go into r.messages' first user message (a system message when there is
/// none); a required or named call sets r.json_schema, and is a 400 when the body
/// constrains the output otherwise too (response_format, guided_json, json_schema).
/// Every error names its field ("tools[2].function.name").
std::optional<api_error> parse_tools(const nlohmann::json& body, completion_request& r);

/// What the message `m` (messages[i], named `where`) is in Llama 3.1's format, after its
/// role and content were read into `cm`: a `tool` message becomes an `ipython` turn
/// (`tool_call_id`, if any, must be a string); an assistant message with one entry in
/// `tool_calls` has that call as its content, `{"name": "f", "parameters": {...}}` (its
/// `arguments` text parsed and written as Python's json.dumps would, as Meta's template
/// does; the message's own content is left out, as there). More than one call in a
/// turn is a 400: the format has one call per turn.
std::optional<api_error> read_tool_turn(const nlohmann::json& m, const std::string& where,
                                        chat_message& cm);

/// Whether the reply may be a call: a chat with tools, tool_choice other than "none".
bool tools_offered(const completion_request& r);

/// A call read from a reply.
struct tool_call {
  std::string name;
  std::string arguments;  ///< a JSON object as compact text, keys in the reply's order
};

/// The reply as a call when, white space trimmed, it is one JSON object
/// {"name": one of `tools`, "parameters" or "arguments": an object} (an added
/// `"type": "function"` is tolerated); otherwise nothing, and the reply is content.
std::optional<tool_call> parse_tool_call(std::string_view reply,
                                         const std::vector<tool_function>& tools);

/// A fresh call id: "call_" and 24 random letters and digits.
std::string new_tool_call_id();

/// The `tool_calls` entry of a reply's message: {"id", "type": "function", "function":
/// {"name", "arguments"}}.
nlohmann::json tool_call_json(const tool_call& c, const std::string& id);

}  // namespace baton::api
