// The Llama 3 tokenizer of tokenizer.hpp: the facade that builds the vocabulary's
// tables and runs encoding and decoding through them. Everything follows llama.cpp
// (c392e509, src/llama-vocab.cpp and src/unicode.cpp) where behaviour could differ; each
// step lives in the file named for it:
// - special_tokens.*: the text is cut at special tokens first (tokenizer_st_partition);
// - pre_tokenizer.*: the pieces between them are split by Llama 3's regex (PCRE2);
// - utf8.*: invalid UTF-8 is read as llama.cpp reads it (U+FFFD per undecodable byte),
//   and GPT-2's byte-to-unicode alphabet;
// - bpe.*: the bytes of each pre-token are merged by rank (token_tables.hpp: the lookups);
// - token_decoding.*: ids back to bytes, the clean-up of spaces, `stream_decoder`.
#include "runtime/text/tokenizer.hpp"

#include <climits>

#include "runtime/text/bpe.hpp"
#include "runtime/text/pre_tokenizer.hpp"
#include "runtime/text/special_tokens.hpp"
#include "runtime/text/token_decoding.hpp"
#include "runtime/text/token_tables.hpp"
#include "runtime/text/utf8.hpp"

namespace baton {

using tokenizer_detail::bpe_merges;
using tokenizer_detail::bpe_scratch;
using tokenizer_detail::fragment;
using tokenizer_detail::pre_tokenizer;
using tokenizer_detail::special_tokens;
using tokenizer_detail::string_table;
using tokenizer_detail::token_pieces;

// -- tokenizer::impl ---------------------------------------------------------------

struct tokenizer::impl {
  int32_t n_vocab = 0;
  std::vector<std::string> texts;
  std::vector<token_type> types;
  token_pieces pieces;
  string_table text_ids;  // exact text -> id (the last one, as llama.cpp)
  bpe_merges bpe;
  special_tokens specials;
  std::vector<uint8_t> eog_flags;
  std::vector<int32_t> eog;
  int32_t bos = -1;
  int32_t eos = -1;
  bool add_bos = true;
  std::optional<std::string> chat_template;
  const pre_tokenizer* pre = nullptr;

  /// Pre-tokenizes and merges one text fragment (no special tokens in it).
  void encode_text(std::string_view text, std::vector<int32_t>& out) const {
    bpe_scratch sc;
    if (tokenizer_detail::valid_utf8(text)) {
      pre->split(text,
                 [&](size_t b, size_t e) { bpe.encode_word(text.substr(b, e - b), sc, out); });
      return;
    }
    const tokenizer_detail::normalized_text norm = tokenizer_detail::normalize_invalid(text);
    const std::string_view bytes(norm.bytes);
    pre->split(norm.view,
               [&](size_t b, size_t e) { bpe.encode_word(bytes.substr(b, e - b), sc, out); });
  }
};

// -- tokenizer -----------------------------------------------------------------------

tokenizer::tokenizer(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
tokenizer::tokenizer(tokenizer&&) noexcept = default;
tokenizer& tokenizer::operator=(tokenizer&&) noexcept = default;
tokenizer::~tokenizer() = default;

result<tokenizer> tokenizer::create(vocab_spec spec) {
  if (spec.model != "gpt2") {
    return make_error("tokenizer model '%s' is not supported (expected 'gpt2', the byte-level "
                      "BPE of Llama 3)",
                      spec.model.c_str());
  }
  // The names llama.cpp maps to LLAMA_VOCAB_PRE_TYPE_LLAMA3.
  if (spec.pre != "llama-bpe" && spec.pre != "llama3" && spec.pre != "llama-v3") {
    return make_error("pre-tokenizer '%s' is not supported (expected 'llama-bpe', Llama 3's; "
                      "'default' is what converters write when they do not recognise the "
                      "tokenizer)",
                      spec.pre.c_str());
  }
  if (spec.tokens.empty()) {
    return make_error("the vocabulary has no tokens");
  }
  if (spec.tokens.size() >= static_cast<size_t>(INT32_MAX / 2)) {
    return make_error("the vocabulary has %zu tokens, more than supported", spec.tokens.size());
  }
  const auto n_vocab = static_cast<int32_t>(spec.tokens.size());
  if (!spec.token_types.empty() && spec.token_types.size() != spec.tokens.size()) {
    return make_error("token_types has %zu entries, expected %d (one per token)",
                      spec.token_types.size(), n_vocab);
  }
  if (spec.bos_id < -1 || spec.bos_id >= n_vocab) {
    return make_error("bos_id %d is out of range [0, %d)", spec.bos_id, n_vocab);
  }
  if (spec.eos_id < -1 || spec.eos_id >= n_vocab) {
    return make_error("eos_id %d is out of range [0, %d)", spec.eos_id, n_vocab);
  }
  auto pre = pre_tokenizer::llama3();
  if (!pre) {
    return pre.err();
  }

  auto p = std::make_unique<impl>();
  p->n_vocab = n_vocab;
  p->pre = *pre;
  p->bos = spec.bos_id;
  p->eos = spec.eos_id;
  p->add_bos = spec.add_bos.value_or(true);  // llama-bpe adds BOS unless told otherwise
  if (p->add_bos && p->bos < 0) {
    return make_error("add_bos is true but the vocabulary has no bos_id");
  }
  p->chat_template = std::move(spec.chat_template);

  p->texts = std::move(spec.tokens);
  p->types.resize(static_cast<size_t>(n_vocab), token_type::normal);
  for (int32_t i = 0; i < n_vocab; ++i) {
    if (!spec.token_types.empty()) {
      const int32_t t = spec.token_types[static_cast<size_t>(i)];
      if (t < 0 || t > static_cast<int32_t>(token_type::byte)) {
        return make_error("token_types[%d] is %d, expected a llama.cpp token type (0..6)", i, t);
      }
      p->types[static_cast<size_t>(i)] = static_cast<token_type>(t);
    }
    std::string& text = p->texts[static_cast<size_t>(i)];
    if (text.empty()) {
      text = "[EMPTY_" + std::to_string(i) + "]";  // as llama.cpp names empty tokens
    }
  }

  auto pieces = token_pieces::create(p->texts, p->types);
  if (!pieces) {
    return pieces.err();
  }
  p->pieces = std::move(*pieces);
  p->text_ids.reserve(static_cast<size_t>(n_vocab));
  for (int32_t i = 0; i < n_vocab; ++i) {
    p->text_ids.assign(p->texts[static_cast<size_t>(i)], i);
  }
  auto bpe = bpe_merges::create(p->texts, spec.merges, p->text_ids);
  if (!bpe) {
    return bpe.err();
  }
  p->bpe = std::move(*bpe);
  p->specials = special_tokens(p->texts, p->types);

  p->eog = tokenizer_detail::end_of_generation_ids(p->eos, p->text_ids);
  p->eog_flags.assign(static_cast<size_t>(n_vocab), 0);
  for (int32_t id : p->eog) {
    p->eog_flags[static_cast<size_t>(id)] = 1;
  }
  return tokenizer(std::move(p));
}

std::vector<int32_t> tokenizer::encode(std::string_view text, bool add_bos,
                                       bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos && impl_->add_bos) {
    out.push_back(impl_->bos);
  }
  if (text.empty()) {
    return out;
  }
  for (const fragment& f : impl_->specials.partition(text, parse_special)) {
    if (f.token >= 0) {
      out.push_back(f.token);
    } else {
      impl_->encode_text(text.substr(f.off, f.len), out);
    }
  }
  return out;
}

result<std::string_view> tokenizer::token_piece(int32_t id, bool render_special) const {
  if (id < 0 || id >= impl_->n_vocab) {
    return make_error("token id %d is out of range [0, %d)", id, impl_->n_vocab);
  }
  if (!render_special && tokenizer_detail::is_special_type(impl_->types[static_cast<size_t>(id)])) {
    return std::string_view();
  }
  return impl_->pieces.piece(id);
}

result<std::string> tokenizer::decode(std::span<const int32_t> ids, decode_options opts) const {
  if (opts.remove_bos && impl_->add_bos && !ids.empty() && ids.front() == impl_->bos) {
    ids = ids.subspan(1);
  }
  std::string out;
  for (int32_t id : ids) {
    auto piece = token_piece(id, opts.render_special);
    if (!piece) {
      return piece.err();
    }
    out.append(*piece);
  }
  if (!opts.clean_spaces || out.empty()) {
    return out;
  }
  return tokenizer_detail::clean_spaces(out);
}

int32_t tokenizer::n_vocab() const { return impl_->n_vocab; }
int32_t tokenizer::bos_id() const { return impl_->bos; }
int32_t tokenizer::eos_id() const { return impl_->eos; }
bool tokenizer::add_bos() const { return impl_->add_bos; }

const std::string& tokenizer::token_text(int32_t id) const {
  BATON_ASSERT(id >= 0 && id < impl_->n_vocab);
  return impl_->texts[static_cast<size_t>(id)];
}

token_type tokenizer::type(int32_t id) const {
  BATON_ASSERT(id >= 0 && id < impl_->n_vocab);
  return impl_->types[static_cast<size_t>(id)];
}

std::optional<int32_t> tokenizer::find_token(std::string_view text) const {
  const int32_t id = impl_->text_ids.find(text);
  if (id == string_table::absent) {
    return std::nullopt;
  }
  return id;
}

bool tokenizer::is_eog(int32_t id) const {
  return id >= 0 && id < impl_->n_vocab && impl_->eog_flags[static_cast<size_t>(id)] != 0;
}

const std::vector<int32_t>& tokenizer::eog_ids() const { return impl_->eog; }

const std::optional<std::string>& tokenizer::chat_template() const {
  return impl_->chat_template;
}

}  // namespace baton
