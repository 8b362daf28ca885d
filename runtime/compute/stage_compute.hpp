// What a shard computes with: layers [first, last) of a model on one device, with that
// device's KV storage for them — the interface both stages implement. "cpu" is
// cpu_stage (the layer loop over kv_storage on a thread pool); "cuda:N" is cuda_stage,
// the CUDA kernels with weights and KV in device memory. Both take and give activations
// in host memory, so stages on different devices (and ranks) chain through the transport
// unchanged.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kernels/cpu/isa.hpp"
#include "runtime/system/device.hpp"
#include "runtime/system/error.hpp"
#include "runtime/system/huge_pages.hpp"
#include "runtime/model/model_config.hpp"
#include "runtime/compute/batch.hpp"

namespace baton {

struct stage_compute_options {
  std::shared_ptr<const model> m;
  int64_t first_layer = 0;
  int64_t last_layer = 0;
  std::string device = "cpu";        ///< "cpu" or "cuda:N"
  int32_t n_blocks = 0;              ///< KV blocks (the router's block ids index them)
  int32_t block_size = 16;
  ggml_type kv_type = ggml_type::f16;
  int32_t n_threads = 1;             ///< cpu
  cpu::isa kernels = cpu::isa::scalar;  ///< cpu
  /// cpu: the matmul weights are copied once at creation into the stage's own memory of
  /// 2 MiB pages, those whose type `kernels` reads faster from a packed layout repacked
  /// (cpu::pack_rows); the same bits out.
  bool repack = true;
  /// cuda: the next stage is a GPU stage of this process, so the output activations stay
  /// in device memory (stage_activations::on_device) instead of coming back to the host.
  bool keep_output_on_device = false;
  /// cuda: scratch for steps of up to max_tokens tokens and max_logits logit rows is
  /// allocated at creation (0: grown on demand).
  int32_t max_tokens = 0;
  int32_t max_logits = 0;
  int64_t max_context = 0;           ///< tokens of one sequence (sizes its block table)
};

/// A step's activations [n_tokens, n_embd]: in host memory, or on a CUDA device where
/// the previous stage (a GPU stage of this process) left them.
struct stage_activations {
  std::vector<float> host;
  std::shared_ptr<float> on_device;
  int32_t device = -1;
};

class stage_compute {
 public:
  virtual ~stage_compute() = default;

  /// hidden [n_tokens, n_embd] in `io` (input, ignored by the first stage, then output);
  /// the last stage writes logits [n_logits, n_vocab] for the rows marked in b.logits, in
  /// batch order. An error (a device fault) fails this step only.
  virtual result<void> forward(const batch& b, stage_activations& io,
                               std::vector<float>& logits) = 0;
  /// The same with activations in host memory.
  result<void> forward(const batch& b, std::vector<float>& hidden, std::vector<float>& logits) {
    stage_activations io;
    io.host = std::move(hidden);
    auto ok = forward(b, io, logits);
    hidden = std::move(io.host);
    return ok;
  }
  /// "cpu", "cuda:0 (NVIDIA H100 80GB HBM3)"
  virtual std::string describe() const = 0;

  /// The KV rows of `blocks` of layer `layer` (one of this stage's), in the format KV
  /// travels in between stages when a layer changes owner (a reshard): K of every block,
  /// then V of every block, each block [slot][kv head][head_dim] in the cache type — the
  /// layout both backends keep, so the bytes are the cache's own. Errors name the layer or
  /// block that is not this stage's.
  virtual result<byte_buffer> export_kv(int64_t layer,
                                                 std::span<const int32_t> blocks) const = 0;
  /// Writes rows export_kv gave (another stage's, same model, cache type and block size)
  /// into `blocks` of layer `layer`: block ids are the router's, the same on every stage.
  /// A layer, block or size that does not fit is an error and writes nothing.
  virtual result<void> import_kv(int64_t layer, std::span<const int32_t> blocks,
                                 std::span<const uint8_t> rows) = 0;
};

/// The compute for `o.device`; errors name the device and what failed (no such device,
/// a build without CUDA, device memory too small for the weights and KV).
result<std::unique_ptr<stage_compute>> make_stage_compute(const stage_compute_options& o);

}  // namespace baton
