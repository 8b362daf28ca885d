// device_specs.hpp. The shares of peak: a decode step's matrix-vector products stream
// weights at about 80 % of HBM peak in good kernels (what vLLM's and llama.cpp's CUDA
// decode reach on H100 per their published tokens/s against model bytes), and a prefill's
// matrix products reach about half of dense BF16 peak (quantized weights are expanded as
// they go; FP8 and INT8 paths would do better and are not modelled). Attention's K/V reads
// get 70 % of HBM peak (paged blocks, short rows). The overheads: 150 us a step (the
// router's turn, sampling, the host waiting on the device) and 25 us a layer (about eight
// kernel launches that CUDA graphs would hide and baton does not use yet).
#include "runtime/sim/device_specs.hpp"

#include <array>

namespace baton {

namespace {

struct sheet_row {
  const char* name;
  double hbm_bytes_per_s;   ///< peak
  double dense_flops;       ///< BF16 dense tensor peak (no sparsity)
  uint64_t memory_gb;       ///< decimal GB, as sold
  const char* basis;
};

constexpr std::array<sheet_row, 4> rows = {{
    {"h100-sxm", 3.35e12, 989e12, 80, "NVIDIA H100 SXM5 datasheet: 3.35 TB/s HBM3, 989 TFLOP/s BF16"},
    {"h100-pcie", 2.0e12, 756e12, 80, "NVIDIA H100 PCIe datasheet: 2.0 TB/s HBM2e, 756 TFLOP/s BF16"},
    {"h200", 4.8e12, 989e12, 141, "NVIDIA H200 SXM datasheet: 4.8 TB/s HBM3e, 989 TFLOP/s BF16"},
    {"a100-80g", 2.039e12, 312e12, 80, "NVIDIA A100 80GB SXM datasheet: 2.04 TB/s HBM2e, 312 TFLOP/s BF16"},
}};

constexpr double weight_share = 0.80;
constexpr double flops_share = 0.50;
constexpr double kv_share = 0.70;
constexpr double step_overhead_s = 150e-6;
constexpr double layer_overhead_s = 25e-6;

}  // namespace

std::optional<spec_sheet> find_spec_sheet(const std::string& name) {
  for (const sheet_row& r : rows) {
    if (name == r.name) {
      spec_sheet s;
      s.profile.name = r.name;
      s.profile.estimate = true;
      s.profile.fixed_s = step_overhead_s;
      s.profile.layer_s = layer_overhead_s;
      s.profile.weight_bytes_per_s = weight_share * r.hbm_bytes_per_s;
      s.profile.flops_per_s = flops_share * r.dense_flops;
      s.profile.kv_bytes_per_s = kv_share * r.hbm_bytes_per_s;
      s.memory_bytes = r.memory_gb * 1000000000ull;
      s.basis = std::string(r.basis) + "; 80 % of HBM for weights, 70 % for KV, 50 % of the "
                "tensor peak, 150 us a step and 25 us a layer of overhead (estimates)";
      return s;
    }
  }
  return std::nullopt;
}

std::string spec_sheet_names() {
  std::string out;
  for (size_t i = 0; i < rows.size(); ++i) {
    out += (i == 0 ? "" : i + 1 == rows.size() ? " or " : ", ") + std::string(rows[i].name);
  }
  return out;
}

}  // namespace baton
