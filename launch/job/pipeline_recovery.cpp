// pipeline_job.hpp's re-plan after a lost rank: recovery_candidates checked in order by the
// planner against the devices every rank described at start, each new stage with the
// memory share of the running stage it grows from.
#include "launch/job/pipeline_job.hpp"

#include "runtime/system/units.hpp"
#include "topology/planner.hpp"

namespace baton::cli {

void pipeline_job::remember_specs(const pipeline_plan& plan) {
  for (size_t i = 0; i < plan.stages.size() && i < plan.resolved.stages.size(); ++i) {
    const stage_spec& sp = plan.resolved.stages[i];
    specs_[{sp.rank, plan.stages[i].layers.first, plan.stages[i].layers.last, sp.device}] = sp;
  }
}

result<recovery_plan> pipeline_job::recovery_stages(const std::vector<stage_setup>& running,
                                                    const std::set<int32_t>& lost,
                                                    int32_t n_blocks) {
  if (!srv_) {
    return make_error("the job is still starting");
  }
  const auto candidates = recovery_candidates(running, lost, mpi_->size());
  if (candidates.empty()) {
    return make_error("no rank holding a stage survives");
  }
  const serving_config& now = srv_->options().serving;
  const int64_t one = kv_blocks_needed(1, now.n_ctx, now.block_size);
  std::string refused;
  for (const recovery_candidate& c : candidates) {
    topology t;
    t.path = "the recovery's placement";
    t.model = model_->file().path();
    t.pipeline = pipeline_keys_of(now);
    bool sized = false;
    for (size_t s = 0; s < c.stages.size(); ++s) {
      const stage_setup& st = c.stages[s];
      stage_spec sp;
      // the memory share of the running stage it grows from (a standby takes the lost one's)
      const stage_setup& was = running[static_cast<size_t>(c.derived_from[s])];
      if (auto it = specs_.find({was.rank, was.first_layer, was.last_layer, was.device});
          it != specs_.end()) {
        sp = it->second;
      }
      sized = sized || sp.kv_cache_memory.has_value() || sp.memory_utilization.has_value();
      sp.rank = st.rank;
      sp.device = st.device;
      sp.layers = layer_range{st.first_layer, st.last_layer, false};
      sp.threads = st.n_threads;
      t.stages.push_back(sp);
    }
    auto plan = plan_pipeline(t, *model_, env_);
    if (!plan) {
      refused += "; " + c.how + ": " + plan.err().message;
      continue;
    }
    const int32_t blocks = pipeline_kv_blocks(*plan, sized && n_blocks_cap_ > 0
                                                         ? n_blocks_cap_
                                                         : n_blocks);
    if (blocks < one) {
      const stage_plan* tight = &plan->stages.front();
      for (const stage_plan& sp : plan->stages) {
        tight = sp.n_blocks < tight->n_blocks ? &sp : tight;
      }
      refused += "; " + c.how + ": the KV pool would hold " + std::to_string(blocks) +
                 " blocks, fewer than one sequence of " + std::to_string(now.n_ctx) +
                 " tokens needs (" + std::to_string(one) + "): layers " +
                 tight->layers.to_string() + " get " + format_bytes(tight->kv_bytes) +
                 " of KV (" + tight->budget_source + ", weights " +
                 format_bytes(tight->weight_bytes) + ")";
      continue;
    }
    remember_specs(*plan);
    return recovery_plan{stages_of(*plan, threads_flag_), blocks, c.how};
  }
  return make_error("no placement fits%s", refused.c_str());
}

}  // namespace baton::cli
