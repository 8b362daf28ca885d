// reshard_plan.hpp.
#include "topology/reshard_plan.hpp"

#include <utility>

namespace baton {

namespace {

/// Who runs each layer: (rank, device), by layer.
std::vector<std::pair<int32_t, std::string>> owners(const pipeline_plan& p, int64_t n_layer) {
  std::vector<std::pair<int32_t, std::string>> out(static_cast<size_t>(n_layer));
  for (size_t s = 0; s < p.stages.size(); ++s) {
    for (int64_t il = p.stages[s].layers.first; il < p.stages[s].layers.last; ++il) {
      out[static_cast<size_t>(il)] = {p.resolved.stages[s].rank, p.resolved.stages[s].device};
    }
  }
  return out;
}

/// The runs of consecutive layers in `layers` (ascending) on `device`, as "a-b on d".
void add_runs(const std::vector<int64_t>& layers, const std::vector<std::string>& devices,
              std::vector<std::string>& out) {
  for (size_t i = 0; i < layers.size();) {
    size_t j = i + 1;
    while (j < layers.size() && layers[j] == layers[j - 1] + 1 && devices[j] == devices[i]) {
      ++j;
    }
    out.push_back(layer_range{layers[i], layers[j - 1] + 1}.to_string() + " on " + devices[i]);
    i = j;
  }
}

}  // namespace

std::vector<rank_moves> plan_reshard_moves(const pipeline_plan& from, const pipeline_plan& to,
                                           const model& m, int32_t world) {
  const int64_t n_layer = m.config().n_layer;
  const auto before = owners(from, n_layer);
  const auto after = owners(to, n_layer);
  const ggml_type kv = to.resolved.pipeline.kv_type;
  const uint64_t capacity_tokens =
      static_cast<uint64_t>(to.n_blocks) * static_cast<uint64_t>(to.resolved.pipeline.block_size);
  const auto& w = m.weights();
  std::vector<rank_moves> out;
  for (int32_t r = 0; r < world; ++r) {
    rank_moves mv;
    mv.rank = r;
    std::vector<int64_t> gained, lost;
    std::vector<std::string> gained_dev, lost_dev;
    for (int64_t il = 0; il < n_layer; ++il) {
      const auto& b = before[static_cast<size_t>(il)];
      const auto& a = after[static_cast<size_t>(il)];
      if (a == b) {
        continue;
      }
      if (a.first == r) {
        gained.push_back(il);
        gained_dev.push_back(a.second);
        mv.weight_bytes_to_load += layer_weight_bytes(m, il);
        mv.kv_bytes_in += m.config().kv_bytes_per_token(kv, il, il + 1) * capacity_tokens;
      }
      if (b.first == r) {
        lost.push_back(il);
        lost_dev.push_back(b.second);
      }
    }
    add_runs(gained, gained_dev, mv.gained);
    add_runs(lost, lost_dev, mv.lost);
    // the embedding rides with the first stage, output norm and head with the last
    auto runs_first = [](const pipeline_plan& p, int32_t rank) {
      return !p.stages.empty() && p.resolved.stages.front().rank == rank;
    };
    auto runs_last = [](const pipeline_plan& p, int32_t rank) {
      return !p.stages.empty() && p.resolved.stages.back().rank == rank;
    };
    if (runs_first(to, r) && !runs_first(from, r) && w.token_embd) {
      mv.weight_bytes_to_load += w.token_embd->n_bytes;
    }
    if (runs_last(to, r) && !runs_last(from, r)) {
      mv.weight_bytes_to_load += (w.output_norm ? w.output_norm->n_bytes : 0) +
                                 (w.head() ? w.head()->n_bytes : 0);
    }
    mv.standby = true;
    for (const auto& s : to.resolved.stages) {
      mv.standby = mv.standby && s.rank != r;
    }
    out.push_back(std::move(mv));
  }
  return out;
}

}  // namespace baton
