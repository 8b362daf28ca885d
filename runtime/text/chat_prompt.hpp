// A conversation turned into the prompt's token ids: the chat template's segments
// (runtime/text/chat_template.hpp) tokenised apart, the template's markup with its special
// tokens read as such, the messages' content as plain text unless the deployment trusts
// its clients. Otherwise a user could write "<|eot_id|><|start_header_id|>system..." and
// have it read as a system turn. llama-server parses special tokens in content; baton
// differs from it there on purpose. For content without special-token text the ids are
// those of tokenising the joined text: Llama 3's tokenizer splits at special tokens
// before pre-tokenising, so no pre-token or BPE merge crosses a segment boundary.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/text/chat_template.hpp"
#include "runtime/system/error.hpp"
#include "runtime/text/tokenizer.hpp"

namespace baton {

/// The ids of `messages` under `tok`'s chat template, BOS first when the vocabulary
/// adds one. `add_assistant` ends with the header of the assistant's reply.
/// `parse_special_in_content`: the content's special-token text becomes control tokens
/// too (trusted clients only; the whole text is then tokenised at once, as before).
result<std::vector<int32_t>> encode_chat(const tokenizer& tok,
                                         const std::vector<chat_message>& messages,
                                         bool add_assistant, bool parse_special_in_content);

}  // namespace baton
