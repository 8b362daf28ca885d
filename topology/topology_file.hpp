// Topology files (TOML): which layers run on which rank and device, the pipeline's
// settings and each stage's memory budget; parsing with file:line errors and writing a
// resolved file back (same semantics, so it round-trips). Checking a topology against a
// model and an MPI world, "auto" placement and the memory plan are the planner's
// (topology/planner.hpp, topology/memory_plan.hpp).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/ggml_type.hpp"
#include "runtime/model/model_config.hpp"
#include "runtime/serving/serving_config.hpp"
#include "runtime/system/error.hpp"
#include "topology/layer_range.hpp"

namespace baton {

/// Bounds on a topology's numbers, checked as the file is read (before any narrowing), so
/// nothing later can overflow: every count is far below 2^31 and every product of two
/// of them fits 64 bits.
struct topology_limits {
  static constexpr int32_t max_world_size = 1 << 20;          ///< MPI ranks (rank < this)
  static constexpr int32_t max_micro_batches = 4096;
  static constexpr int32_t max_num_seqs = 1 << 20;
  static constexpr int32_t max_num_batched_tokens = 1 << 24;
  static constexpr int32_t max_block_size = 1 << 16;          ///< tokens
  static constexpr int32_t max_threads = 4096;
  static constexpr uint64_t max_file_bytes = uint64_t{16} << 20;  ///< the TOML text
};

/// One [[stage]] entry.
struct stage_spec {
  int32_t rank = 0;
  std::string device = "cpu";                  ///< "cpu" or "cuda:N"
  layer_range layers;                          ///< layers.automatic for "auto"
  std::optional<double> memory_utilization;    ///< vLLM's meaning, of this stage's device
  std::optional<uint64_t> kv_cache_memory;     ///< bytes; overrides memory_utilization
  int32_t threads = 0;                         ///< CPU stages: 0 = the rank's share
  int line = 0;                                ///< where the entry starts in the file
  // where each field is written (0: absent), so the planner's messages can point at it
  int rank_line = 0;
  int device_line = 0;
  int layers_line = 0;
  int memory_line = 0;                         ///< memory_utilization or kv_cache_memory
};

/// The [pipeline] table as written (serving_config's meanings; 0 = resolved by the planner).
struct pipeline_spec {
  int32_t micro_batches = 0;                   ///< 0 = default_micro_batches(stages)
  int32_t max_num_seqs = serving_config{}.max_num_seqs;
  int32_t max_num_batched_tokens = serving_config{}.max_num_batched_tokens;
  int32_t block_size = serving_config{}.block_size;
  int64_t max_model_len = 0;                   ///< context; 0 = min(training context, 4096)
  ggml_type kv_type = serving_config{}.kv_type;  ///< key "kv_cache_dtype": "f16" | "f32"
  int line = 0;                                ///< the [pipeline] header (0: absent)
};

/// The [pipeline] keys of `s`: the table a topology made in memory carries (--device).
pipeline_spec pipeline_keys_of(const serving_config& s);

/// `s` with a (resolved) [pipeline] table's settings: the file's keys replace the
/// command's; the rest (max_queue, max_per_key, prefix caching, n_blocks) stays as it is.
serving_config with_pipeline_keys(serving_config s, const pipeline_spec& p);

struct topology {
  std::string path;                            ///< the file ("<text>" when parsed from a string)
  std::string model;                           ///< as resolved: relative to the file's folder
  int model_line = 0;                          ///< 0: no `model` key
  pipeline_spec pipeline;
  std::vector<stage_spec> stages;
  /// "auto" stages split the layers evenly (split_layers) instead of balancing their
  /// cost: default_topology's meaning of `--stages N`. Not a file key.
  bool even_split = false;
};

/// Reads and checks syntax, key names (unknown keys are errors), types and ranges of
/// single values. Errors read "cluster.toml:12: stage 2 field 'layers': expected ..."
result<topology> parse_topology_file(const std::string& path);
result<topology> parse_topology_text(std::string_view text, const std::string& name = "<text>");

/// TOML text for `t` (layers always explicit) that parse_topology_text reads back equal.
std::string to_toml(const topology& t);

/// A one-stage-per-rank topology in memory for `--stages N` without a file: all on
/// rank 0, device cpu, layers split evenly (every stage "auto" with even_split set, since
/// n_layer is known only to plan_pipeline).
topology default_topology(const std::string& model_path, int32_t n_stages);

}  // namespace baton
