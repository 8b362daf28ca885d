// A pipeline stage on a CUDA device: its layers' weights uploaded once to device memory
// (the file's pages released afterwards, so no host copy stays resident), its KV cache
// paged in device memory, and every step run by kernels/cuda on one stream. Activations
// enter and leave through host memory (the transport's format), or stay in device memory
// when the neighbouring stage is a GPU stage of the same process (copied device to
// device, peer to peer between GPUs); everything in between stays on the device. Built
// only with CUDA (BATON_HAVE_CUDA).
#pragma once

#include "kernels/cuda/portability.cuh"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cuda/ops.cuh"
#include "runtime/compute/stage_compute.hpp"
#include "runtime/compute/step_metadata.hpp"

namespace baton {

class cuda_stage final : public stage_compute {
 public:
  /// Uploads the weights of o.first_layer..o.last_layer (plus the embedding on the first
  /// stage, output norm and head on the last) to device `index` and allocates o.n_blocks
  /// KV blocks there. Errors name the device, what was being allocated and the memory
  /// the device had free.
  static result<std::unique_ptr<cuda_stage>> create(const stage_compute_options& o, int index);
  ~cuda_stage() override;
  cuda_stage(const cuda_stage&) = delete;
  cuda_stage& operator=(const cuda_stage&) = delete;

  using stage_compute::forward;
  result<void> forward(const batch& b, stage_activations& io,
                       std::vector<float>& logits) override;
  std::string describe() const override { return name_; }
  result<byte_buffer> export_kv(int64_t il,
                                         std::span<const int32_t> blocks) const override;
  result<void> import_kv(int64_t il, std::span<const int32_t> blocks,
                         std::span<const uint8_t> rows) override;

  /// Device bytes held: weights, KV, scratch.
  uint64_t weight_bytes() const { return weights_.bytes; }
  uint64_t kv_bytes() const { return kv_.bytes; }

 private:
  /// Device memory that frees itself; grown, never shrunk.
  struct buffer {
    void* p = nullptr;
    size_t bytes = 0;
    ~buffer();
    buffer() = default;
    buffer(const buffer&) = delete;
    buffer& operator=(const buffer&) = delete;
    template <class T>
    T* as() const { return static_cast<T*>(p); }
  };
  /// A weight matrix on the device: n_out rows of n_in elements of `type`.
  struct matrix {
    const void* data = nullptr;
    ggml_type type = ggml_type::f32;
    int64_t n_in = 0;
    int64_t n_out = 0;
  };
  struct layer {
    const float* attn_norm = nullptr;
    const float* ffn_norm = nullptr;
    matrix wq, wk, wv, wo, gate, up, down;
  };

  cuda_stage(const stage_compute_options& o, int index);
  result<void> upload(const stage_compute_options& o);
  result<void> grow(buffer& b, size_t bytes, const char* what);
  result<void> reserve(int64_t n_tokens, int64_t n_logits, size_t n_table_entries);
  /// y[n_tokens, w.n_out] = x[n_tokens, w.n_in] · Wᵀ
  result<void> matmul(const matrix& w, const float* x, int64_t n_tokens, float* y);
  result<void> check(cudaError_t e, const char* what) const;
  /// x = the step's input activations, from the host or from a device.
  result<void> take_input(stage_activations& io, size_t n_floats);
  /// io = x: back to the host, or into a fresh device buffer for the next GPU stage.
  result<void> give_output(stage_activations& io, size_t n_floats);

  // -- member variables -------------------------------------------------------
  std::shared_ptr<const model> model_;
  int64_t first_;
  int64_t last_;
  int device_;
  bool keep_output_on_device_ = false;
  std::string name_;
  std::string broken_;                    // set once the device has failed: every step fails
  cudaStream_t stream_ = nullptr;
  buffer weights_;                        // one arena for every uploaded tensor
  std::vector<layer> layers_;             // [last - first]
  matrix embd_, head_;
  const float* output_norm_ = nullptr;
  buffer kv_;                             // per layer: K blocks, then V blocks
  std::vector<cuda::paged_kv> kv_layers_;
  std::vector<float> rope_freqs_;         // host: rope angles are computed on the host
  // scratch, grown to the largest step seen
  buffer x_, cur_, q_, k_, v_, attn_, gate_, up_, xq_, logits_, meta_, cs_;
  step_metadata meta_host_;
  std::vector<float> cs_host_;
};

}  // namespace baton
