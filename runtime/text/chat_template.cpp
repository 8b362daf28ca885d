// Chat templates of chat_template.hpp. Format detection follows llama.cpp's
// llm_chat_detect_template as far as Llama 3 is concerned: templates it would take for
// ChatML or Mistral (checked before Llama 3 there) are refused rather than misread.
#include "runtime/text/chat_template.hpp"

#include <algorithm>
#include <array>
#include <string_view>

namespace baton {

namespace {

/// llama.cpp's trim: ASCII white space (isspace in the C locale) at both ends.
std::string_view trim(std::string_view s) {
  const auto space = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
  };
  while (!s.empty() && space(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && space(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

/// The first ~40 bytes of a template, on one line, for messages.
std::string excerpt(const std::string& t) {
  std::string out;
  for (char c : t.substr(0, 40)) {
    out += (c == '\n') ? std::string("\\n") : std::string(1, c);
  }
  if (t.size() > 40) {
    out += "...";
  }
  return out;
}

bool contains(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

result<chat_format> detect_chat_format(const std::optional<std::string>& template_text) {
  // No template in the model: Llama 3's format is the default here (llama.cpp falls
  // back to ChatML, but every model baton serves is of the Llama 3 family).
  if (!template_text || template_text->empty() || *template_text == "llama3") {
    return chat_format::llama3;
  }
  const std::string& t = *template_text;
  const bool other_format = contains(t, "<|im_start|>") || contains(t, "[INST]");
  if (!other_format && contains(t, "<|start_header_id|>") &&
      contains(t, "<|end_header_id|>")) {
    return chat_format::llama3;
  }
  return make_error("chat template \"%s\" is not supported (only Llama 3's format, with "
                    "<|start_header_id|> and <|end_header_id|>, is known)",
                    excerpt(t).c_str());
}

result<std::vector<chat_segment>> apply_chat_template_segments(
    const std::optional<std::string>& template_text, const std::vector<chat_message>& messages,
    bool add_assistant) {
  auto format = detect_chat_format(template_text);
  if (!format) {
    return format.err();
  }
  static constexpr std::array<std::string_view, 5> roles = {"system", "user", "assistant",
                                                             "tool", "ipython"};
  std::vector<chat_segment> out;
  // Adjacent pieces of one kind join, so that markup and content alternate.
  const auto add = [&out](std::string_view text, bool markup) {
    if (text.empty()) {
      return;
    }
    if (out.empty() || out.back().markup != markup) {
      out.push_back({std::string(), markup});
    }
    out.back().text += text;
  };
  for (size_t i = 0; i < messages.size(); ++i) {
    const chat_message& m = messages[i];
    if (std::find(roles.begin(), roles.end(), m.role) == roles.end()) {
      return make_error("message %zu has role '%s', expected system, user, assistant, tool or "
                        "ipython",
                        i, m.role.c_str());
    }
    add("<|start_header_id|>", true);
    add(m.role, true);
    add("<|end_header_id|>\n\n", true);
    add(trim(m.content), false);
    add("<|eot_id|>", true);
  }
  if (add_assistant) {
    add("<|start_header_id|>assistant<|end_header_id|>\n\n", true);
  }
  return out;
}

result<std::string> apply_chat_template(const std::optional<std::string>& template_text,
                                        const std::vector<chat_message>& messages,
                                        bool add_assistant) {
  auto segments = apply_chat_template_segments(template_text, messages, add_assistant);
  if (!segments) {
    return segments.err();
  }
  std::string out;
  for (const chat_segment& s : *segments) {
    out += s.text;
  }
  return out;
}

}  // namespace baton
