// The llama file types (llama_ftype) baton writes: what a whole GGUF file is "as"
// (general.file_type), with the name llama-quantize gives it, its id and the tensor type
// most of its 2-D weights get. One table (ftype.cpp) that `baton quantize`, the quantizer's
// rules, model_builder (`baton mkmodel`) and their messages all read. Its own file because
// a file type is a property of a model file, not of a kernel: kernels/ggml_type holds the
// tensor types, one level below.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "kernels/ggml_type.hpp"

namespace baton {

/// The file types baton can write, in the order messages list them.
enum class ftype { f32, f16, bf16, q8_0, q4_0, q4_k_m, q6_k };

struct ftype_info {
  ftype value;
  std::string_view name;    ///< as llama-quantize names it: "Q4_K_M"
  std::string_view alias;   ///< another name llama-quantize takes for it ("Q4_K"), or ""
  uint32_t id;              ///< LLAMA_FTYPE_*, stored as general.file_type
  ggml_type default_type;   ///< the type most 2-D weights get (llama_ftype_get_default_type)
  bool mixture;             ///< its rules mix types beyond the head (Q4_K_M: Q6_K attn_v, ffn_down)
};

/// Every row, in enum order.
std::span<const ftype_info> ftype_table();

/// The row of a file type.
const ftype_info& info(ftype t);

/// A name or alias, case-insensitively ("q4_k_m", "Q4_K", "bf16"); nothing when unknown.
std::optional<ftype> parse_ftype(std::string_view name);

/// The file type of a file whose 2-D weights are all `weights` (what `baton mkmodel`
/// writes): the row with that default type and no mixture; nothing when there is none.
std::optional<ftype> ftype_of_weights(ggml_type weights);

/// The names for a message or a help line, in table order: "F32, F16, ..., Q4_K_M or Q6_K"
/// with last_sep " or ". `aliases`: each alias too, before its name ("Q4_K, Q4_K_M");
/// `note_aliases` writes it "Q4_K (= Q4_K_M)".
std::string ftype_names(std::string_view last_sep, bool aliases = false,
                        bool note_aliases = false);

}  // namespace baton
