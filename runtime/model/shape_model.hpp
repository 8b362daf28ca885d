// A model of a known shape with no weights at all: its GGUF header alone, with every
// tensor typed as `baton quantize` (llama-quantize's rules) would type it. What `baton plan
// --shape llama3-70b --type q4_k_m` plans and simulates: a 405B Q4_K_M file cannot be
// written on this machine's disk, and only the tensors' sizes matter to a plan.
#pragma once

#include <memory>

#include "runtime/model/ftype.hpp"
#include "runtime/model/model_builder.hpp"
#include "runtime/model/model_config.hpp"

namespace baton {

/// The header-only model (gguf_file::header_only) of `shape` as file type `type`.
/// Nothing may compute with it: its tensors have no data.
result<std::shared_ptr<const model>> shape_model(const model_shape& shape, ftype type);

}  // namespace baton
