// chat_prompt.hpp: encode_chat, which tokenises the template's segments apart, or the joined text
// when special tokens in content are to be parsed.
#include "runtime/text/chat_prompt.hpp"

namespace baton {

result<std::vector<int32_t>> encode_chat(const tokenizer& tok,
                                         const std::vector<chat_message>& messages,
                                         bool add_assistant, bool parse_special_in_content) {
  auto segments = apply_chat_template_segments(tok.chat_template(), messages, add_assistant);
  if (!segments) {
    return segments.err();
  }
  if (parse_special_in_content || segments->empty()) {
    std::string text;
    for (const chat_segment& s : *segments) {
      text += s.text;
    }
    return tok.encode(text, true, true);
  }
  std::vector<int32_t> ids;
  bool first = true;
  for (const chat_segment& s : *segments) {
    const std::vector<int32_t> part = tok.encode(s.text, first, s.markup);
    ids.insert(ids.end(), part.begin(), part.end());
    first = false;
  }
  return ids;
}

}  // namespace baton
