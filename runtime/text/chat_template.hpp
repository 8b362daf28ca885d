// Chat templates: a conversation of role/content messages turned into the prompt text
// the model was trained on. Only Llama 3 Instruct's format is known, applied exactly as
// llama.cpp's llama_chat_apply_template does for LLM_CHAT_TEMPLATE_LLAMA_3 (no Jinja
// engine: the template text is only used to recognise the format). The prompt comes as
// segments, the template's own markup apart from the messages' content, so that content
// can be tokenised without reading "<|eot_id|>" in it as a control token
// (runtime/text/chat_prompt.hpp).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "runtime/system/error.hpp"

namespace baton {

struct chat_message {
  std::string role;     ///< system, user, assistant, tool or ipython
  std::string content;
};

enum class chat_format {
  llama3,  ///< <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>
};

/// A piece of a templated conversation: the template's markup (its special tokens are
/// meant as such) or a message's content (text a client wrote, trusted or not).
struct chat_segment {
  std::string text;
  bool markup = false;
};

/// The format of `tokenizer.chat_template`: Llama 3 when it has Llama 3's header tokens
/// (or is the name "llama3"), Llama 3 too when there is none; otherwise an error that
/// quotes the start of the template.
result<chat_format> detect_chat_format(const std::optional<std::string>& template_text);

/// The prompt for `messages` as segments, markup and content alternating, none empty
/// (no BOS: the tokenizer adds it). `add_assistant` appends the header that starts the
/// assistant's reply. Their texts joined are `apply_chat_template`'s result.
result<std::vector<chat_segment>> apply_chat_template_segments(
    const std::optional<std::string>& template_text, const std::vector<chat_message>& messages,
    bool add_assistant);

/// The prompt text for `messages`: the segments' texts joined.
result<std::string> apply_chat_template(const std::optional<std::string>& template_text,
                                        const std::vector<chat_message>& messages,
                                        bool add_assistant);

}  // namespace baton
