// tool_calls.hpp: the tools read and shown to the model, earlier calls and results
// written as Meta's Llama 3.1 template writes them, the schema of a forced call, and a
// reply read back as a call. The body arrives parsed into sorted maps, so a tool's schema
// is shown with its keys in sorted order (Meta's template keeps the client's order);
// calls and arguments the model wrote keep theirs (ordered_json).
#include "launch/serve/tool_calls.hpp"

#include <random>
#include <utility>

#include "launch/serve/field_reader.hpp"

namespace baton::api {

namespace {

using nlohmann::json;
using nlohmann::ordered_json;

/// Whether no array or object in `v` lies deeper than `max_depth` (`v` itself is depth
/// 1). Iterative: it is what makes the recursive writers below safe on hostile JSON.
template <class J>
bool nested_within(const J& v, size_t max_depth) {
  std::vector<std::pair<const J*, size_t>> todo = {{&v, 1}};
  while (!todo.empty()) {
    const auto [node, depth] = todo.back();
    todo.pop_back();
    if (!node->is_structured()) {
      continue;
    }
    if (depth > max_depth) {
      return false;
    }
    for (const J& child : *node) {
      todo.emplace_back(&child, depth + 1);
    }
  }
  return true;
}

/// A JSON text that never throws on invalid UTF-8 (the model's text may hold some).
template <class J>
std::string text_of(const J& v, int indent = -1) {
  return v.dump(indent, ' ', false, J::error_handler_t::replace);
}

/// `v` as Python's json.dumps writes it by default (", " and ": " between items), which
/// is what Meta's template's `tojson` gives for a call's arguments. `v` is depth-checked.
void write_python_json(const ordered_json& v, std::string& out) {
  if (v.is_object()) {
    out += '{';
    for (auto it = v.begin(); it != v.end(); ++it) {
      out += it == v.begin() ? "" : ", ";
      out += text_of(ordered_json(it.key()));
      out += ": ";
      write_python_json(it.value(), out);
    }
    out += '}';
  } else if (v.is_array()) {
    out += '[';
    for (size_t i = 0; i < v.size(); ++i) {
      out += i == 0 ? "" : ", ";
      write_python_json(v[i], out);
    }
    out += ']';
  } else {
    out += text_of(v);
  }
}

/// The white space chat_template.cpp trims from content.
bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

std::string_view trimmed(std::string_view s) {
  while (!s.empty() && is_space(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && is_space(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

/// OpenAI's rule for function names: ^[a-zA-Z0-9_-]{1,64}$.
bool valid_name(const std::string& n) {
  if (n.empty() || n.size() > 64) {
    return false;
  }
  for (const char c : n) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) {
      return false;
    }
  }
  return true;
}

/// The field `key` of `object`; nullptr when it is absent or null (both mean "the
/// default", as field_reader reads them).
const json* optional_field(const json& object, const char* key) {
  const auto it = object.find(key);
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

/// tools[i]: {"type": "function", "function": {"name", "description"?, "parameters"?,
/// "strict"?}} into `out`, and the definition as the model is shown it into `def`.
std::optional<api_error> parse_tool(const json& t, const std::string& at, tool_function& out,
                                    ordered_json& def) {
  if (!t.is_object()) {
    return invalid(at, "'" + at + "' must be {\"type\": \"function\", \"function\": {\"name\": "
                                  "...}}, got " + shown(t));
  }
  if (const json* type = optional_field(t, "type"); type && *type != "function") {
    return invalid(at + ".type", "'" + at + ".type' must be \"function\" (the only kind of tool "
                                            "supported), got " +
                                     (type->is_string() ? excerpt(type->get<std::string>())
                                                        : shown(*type)));
  }
  const json* fn = optional_field(t, "function");
  if (!fn || !fn->is_object()) {
    return invalid(at + ".function", "'" + at + ".function' must be an object {\"name\", "
                                                "\"description\", \"parameters\"}, got " +
                                         (fn ? shown(*fn) : std::string("nothing")));
  }
  const std::string f = at + ".function";
  const json* name = optional_field(*fn, "name");
  if (!name || !name->is_string() || !valid_name(name->get_ref<const std::string&>())) {
    return invalid(f + ".name", "'" + f + ".name' must be a string of 1 to 64 letters, digits, "
                                          "'_' or '-', got " +
                                    (!name ? std::string("nothing")
                                     : name->is_string() ? excerpt(name->get<std::string>())
                                                         : shown(*name)));
  }
  out.name = name->get<std::string>();
  def = ordered_json{{"type", "function"}, {"function", {{"name", out.name}}}};
  if (const json* d = optional_field(*fn, "description")) {
    if (!d->is_string()) {
      return invalid(f + ".description", "'" + f + ".description' must be a string, got " +
                                             shown(*d));
    }
    out.description = d->get<std::string>();
    def["function"]["description"] = out.description;
  }
  out.parameters = "{}";
  if (const json* p = optional_field(*fn, "parameters")) {
    if (!p->is_object()) {
      return invalid(f + ".parameters", "'" + f + ".parameters' must be a JSON Schema object, "
                                                  "got " + shown(*p));
    }
    if (!nested_within(*p, k_max_json_depth)) {
      return invalid(f + ".parameters", "'" + f + ".parameters' nests deeper than " +
                                            std::to_string(k_max_json_depth) + " levels");
    }
    out.parameters = text_of(*p);
    def["function"]["parameters"] = ordered_json::parse(out.parameters);
  }
  if (const json* s = optional_field(*fn, "strict")) {
    if (!s->is_boolean()) {
      return invalid(f + ".strict", "'" + f + ".strict' must be a boolean, got " +
                                        shown(*s));
    }
    out.strict = s->get<bool>();
  }
  return std::nullopt;
}

/// `tools` into r.tools, and their definitions as the model is shown them into `defs`.
std::optional<api_error> parse_tool_list(const json& body, completion_request& r,
                                         std::vector<ordered_json>& defs) {
  const json* tools = optional_field(body, "tools");
  if (!tools) {
    return std::nullopt;
  }
  if (!tools->is_array()) {
    return invalid("tools", "'tools' must be a list of {\"type\": \"function\", \"function\": "
                            "{...}}, got " + shown(*tools));
  }
  if (tools->size() > k_max_tools) {
    return invalid("tools", "'tools' has " + std::to_string(tools->size()) + " entries; at most " +
                                std::to_string(k_max_tools));
  }
  r.tools.resize(tools->size());
  defs.resize(tools->size());
  for (size_t i = 0; i < tools->size(); ++i) {
    const std::string at = "tools[" + std::to_string(i) + "]";
    if (auto e = parse_tool((*tools)[i], at, r.tools[i], defs[i])) {
      return e;
    }
    for (size_t j = 0; j < i; ++j) {
      if (r.tools[j].name == r.tools[i].name) {
        return invalid(at + ".function.name", "'" + at + ".function.name' " +
                                                  excerpt(r.tools[i].name) + " is tools[" +
                                                  std::to_string(j) + "]'s name too");
      }
    }
  }
  return std::nullopt;
}

/// `tool_choice`: "none", "auto", "required" or {"type": "function", "function":
/// {"name": a declared tool}}; absent: "auto".
std::optional<api_error> parse_tool_choice(const json& body, completion_request& r) {
  const json* c = optional_field(body, "tool_choice");
  if (!c) {
    return std::nullopt;
  }
  const std::string expected = "'tool_choice' must be \"none\", \"auto\", \"required\" or "
                               "{\"type\": \"function\", \"function\": {\"name\": ...}}, got ";
  if (c->is_string()) {
    const std::string& s = c->get_ref<const std::string&>();
    if (s == "none" || s == "auto" || s == "required") {
      r.tool_choice = s == "none"   ? tool_choice_mode::none
                      : s == "auto" ? tool_choice_mode::automatic
                                    : tool_choice_mode::required;
      return std::nullopt;
    }
    return invalid("tool_choice", expected + excerpt(s));
  }
  if (!c->is_object()) {
    return invalid("tool_choice", expected + shown(*c));
  }
  if (const json* type = optional_field(*c, "type"); type && *type != "function") {
    return invalid("tool_choice.type", "'tool_choice.type' must be \"function\", got " +
                                           (type->is_string() ? excerpt(type->get<std::string>())
                                                              : shown(*type)));
  }
  const json* fn = optional_field(*c, "function");
  const json* name = fn && fn->is_object() ? optional_field(*fn, "name") : nullptr;
  if (!name || !name->is_string()) {
    return invalid("tool_choice.function.name",
                   "'tool_choice.function.name' must be a string naming one of the request's "
                   "'tools', got " + (name ? shown(*name) : std::string("nothing")));
  }
  r.tool_choice = tool_choice_mode::named;
  r.tool_choice_name = name->get<std::string>();
  for (const tool_function& t : r.tools) {
    if (t.name == r.tool_choice_name) {
      return std::nullopt;
    }
  }
  return invalid("tool_choice.function.name", "'tool_choice.function.name' " +
                                                  excerpt(r.tool_choice_name) +
                                                  " is not one of the request's 'tools'");
}

/// The schema of a call to `t`: {"name": t.name, "parameters": t's parameters}. A tool
/// without parameters takes an empty object, as OpenAI reads an absent schema.
json call_schema(const tool_function& t) {
  json parameters = t.parameters == "{}"
                        ? json{{"type", "object"}, {"properties", json::object()},
                               {"additionalProperties", false}}
                        : json::parse(t.parameters, nullptr, false);
  return {{"type", "object"},
          {"properties", {{"name", {{"const", t.name}}}, {"parameters", std::move(parameters)}}},
          {"required", {"name", "parameters"}},
          {"additionalProperties", false}};
}

/// A required or named call: r.json_schema allows that call only.
std::optional<api_error> constrain_to_a_call(completion_request& r) {
  const bool named = r.tool_choice == tool_choice_mode::named;
  if (r.tool_choice != tool_choice_mode::required && !named) {
    return std::nullopt;
  }
  const std::string what = named ? "a named function" : "\"required\"";
  if (r.tools.empty()) {
    return invalid("tool_choice", "'tool_choice' " + what + " needs 'tools'");
  }
  if (!r.json_schema.empty()) {
    return invalid("tool_choice", "'tool_choice' " + what + " constrains the reply to a tool "
                                  "call; send it without response_format, guided_json or "
                                  "json_schema");
  }
  json any_of = json::array();
  bool strict = false;
  for (const tool_function& t : r.tools) {
    if (!named || t.name == r.tool_choice_name) {
      any_of.push_back(call_schema(t));
      strict = strict || t.strict;
    }
  }
  r.json_schema = text_of(any_of.size() == 1 ? any_of[0] : json{{"anyOf", any_of}});
  r.schema_strict = strict;
  return std::nullopt;
}

/// The tools shown to the model: Meta's instruction and each definition, in the first
/// user message as Meta's template puts them (in a system message when no user speaks).
void show_tools(std::vector<chat_message>& messages, const std::vector<ordered_json>& defs) {
  std::string block(k_tools_instruction);
  for (const ordered_json& t : defs) {
    block += text_of(t, 4);
    block += "\n\n";
  }
  for (chat_message& m : messages) {
    if (m.role == "user") {
      m.content = block + std::string(trimmed(m.content));
      return;
    }
  }
  if (!messages.empty() && messages.front().role == "system") {
    messages.front().content = block + std::string(trimmed(messages.front().content));
    return;
  }
  messages.insert(messages.begin(), chat_message{"system", block});
}

/// messages[i].tool_calls[0] as the turn the model would have written.
std::optional<api_error> write_call(const json& call, const std::string& at, std::string& out) {
  if (!call.is_object()) {
    return invalid(at, "'" + at + "' must be {\"type\": \"function\", \"function\": {\"name\": "
                                  "..., \"arguments\": \"{...}\"}}, got " + shown(call));
  }
  if (const json* type = optional_field(call, "type"); type && *type != "function") {
    return invalid(at + ".type", "'" + at + ".type' must be \"function\", got " +
                                     (type->is_string() ? excerpt(type->get<std::string>())
                                                        : shown(*type)));
  }
  const json* fn = optional_field(call, "function");
  const json* name = fn && fn->is_object() ? optional_field(*fn, "name") : nullptr;
  if (!name || !name->is_string()) {
    const std::string n = at + ".function.name";
    return invalid(n, "'" + n + "' must be a string, got " +
                          (name ? shown(*name) : std::string("nothing")));
  }
  // arguments: the JSON text OpenAI sends, or the object itself as some clients do
  // (parsing is iterative in nlohmann; writing is not, hence the depth checks first)
  const json* a = optional_field(*fn, "arguments");
  const std::string where = at + ".function.arguments";
  const std::string too_deep = "'" + where + "' nests deeper than " +
                               std::to_string(k_max_json_depth) + " levels";
  ordered_json args = ordered_json::object();
  if (a && a->is_object()) {
    if (!nested_within(*a, k_max_json_depth)) {
      return invalid(where, too_deep);
    }
    args = ordered_json::parse(text_of(*a), nullptr, false);
  } else if (a && a->is_string() && !trimmed(a->get_ref<const std::string&>()).empty()) {
    args = ordered_json::parse(a->get_ref<const std::string&>(), nullptr, false);
  } else if (a && !a->is_string()) {
    return invalid(where, "'" + where + "' must be a JSON object as text, got " + shown(*a));
  }
  if (!args.is_object()) {
    return invalid(where, "'" + where + "' must be a JSON object as text, got other text");
  }
  if (!nested_within(args, k_max_json_depth)) {
    return invalid(where, too_deep);
  }
  out = "{\"name\": " + text_of(*name) + ", \"parameters\": ";
  write_python_json(args, out);
  out += "}";
  return std::nullopt;
}

}  // namespace

std::optional<api_error> parse_tools(const json& body, completion_request& r) {
  if (!r.chat) {
    return std::nullopt;  // /v1/completions: no conversation to show tools in
  }
  std::vector<ordered_json> defs;
  if (auto e = parse_tool_list(body, r, defs)) {
    return e;
  }
  if (auto e = parse_tool_choice(body, r)) {
    return e;
  }
  if (const json* p = optional_field(body, "parallel_tool_calls")) {
    if (!p->is_boolean()) {
      return invalid("parallel_tool_calls", "'parallel_tool_calls' must be a boolean, got " +
                                                shown(*p));
    }
    r.parallel_tool_calls = p->get<bool>();
  }
  if (auto e = constrain_to_a_call(r)) {
    return e;
  }
  if (tools_offered(r)) {
    show_tools(r.messages, defs);
  }
  return std::nullopt;
}

std::optional<api_error> read_tool_turn(const json& m, const std::string& where,
                                        chat_message& cm) {
  if (cm.role == "tool") {
    if (const json* id = optional_field(m, "tool_call_id"); id && !id->is_string()) {
      return invalid(where + ".tool_call_id", "'" + where + ".tool_call_id' must be a string, "
                                                            "got " + shown(*id));
    }
    cm.role = "ipython";  // Llama 3.1's turn for what a tool returned
    return std::nullopt;
  }
  const json* calls = cm.role == "assistant" ? optional_field(m, "tool_calls") : nullptr;
  if (!calls) {
    return std::nullopt;
  }
  const std::string at = where + ".tool_calls";
  if (!calls->is_array()) {
    return invalid(at, "'" + at + "' must be a list of calls, got " + shown(*calls));
  }
  if (calls->size() > 1) {
    return invalid(at, "'" + at + "' has " + std::to_string(calls->size()) +
                           " calls; Llama 3.1's tool format holds one call per assistant turn "
                           "(send each call in a turn of its own)");
  }
  if (calls->empty()) {
    return std::nullopt;
  }
  return write_call((*calls)[0], at + "[0]", cm.content);
}

bool tools_offered(const completion_request& r) {
  return r.chat && !r.tools.empty() && r.tool_choice != tool_choice_mode::none;
}

std::optional<tool_call> parse_tool_call(std::string_view reply,
                                         const std::vector<tool_function>& tools) {
  const std::string_view text = trimmed(reply);
  if (text.empty() || text.front() != '{') {
    return std::nullopt;
  }
  const ordered_json j = ordered_json::parse(text, nullptr, false);
  if (!j.is_object()) {
    return std::nullopt;
  }
  const ordered_json* args = nullptr;
  std::string name;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    if (k == "name" && it->is_string()) {
      name = it->get<std::string>();
    } else if ((k == "parameters" || k == "arguments") && it->is_object() && !args) {
      args = &*it;
    } else if (!(k == "type" && *it == "function")) {
      return std::nullopt;  // another key, or both parameters and arguments
    }
  }
  if (!args || !nested_within(*args, k_max_json_depth)) {
    return std::nullopt;
  }
  for (const tool_function& t : tools) {
    if (t.name == name) {
      return tool_call{name, text_of(*args)};
    }
  }
  return std::nullopt;
}

std::string new_tool_call_id() {
  static constexpr std::string_view k_alphabet =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_int_distribution<size_t> pick(0, k_alphabet.size() - 1);
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) {
    id += k_alphabet[pick(rng)];
  }
  return id;
}

json tool_call_json(const tool_call& c, const std::string& id) {
  return {{"id", id},
          {"type", "function"},
          {"function", {{"name", c.name}, {"arguments", c.arguments}}}};
}

}  // namespace baton::api
