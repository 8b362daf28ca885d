// step_pump.hpp.
#include "runtime/serving/step_pump.hpp"

namespace baton {

result<serving_config> resolve_serving(serving_config sv, int64_t n_stages, int64_t n_ctx_train) {
  if (sv.micro_batches == 0) {
    sv.micro_batches = default_micro_batches(n_stages);
  }
  if (sv.max_num_batched_tokens < 1 || sv.max_num_seqs < 1) {
    return make_error("max_num_batched_tokens (%d) and max_num_seqs (%d) must be >= 1",
                      sv.max_num_batched_tokens, sv.max_num_seqs);
  }
  if (sv.n_ctx > n_ctx_train) {
    return make_error("context (%lld) is larger than the model's training context (%lld)",
                      static_cast<long long>(sv.n_ctx), static_cast<long long>(n_ctx_train));
  }
  if (sv.n_blocks <= 0) {
    // one sequence of the whole context
    sv.n_blocks = static_cast<int32_t>((sv.n_ctx + sv.block_size - 1) / sv.block_size);
  }
  return sv;
}

size_t pump_steps(scheduler& s, const std::function<void(sched_step&&)>& dispatch) {
  size_t n = 0;
  while (auto step = s.next_step()) {
    dispatch(std::move(*step));
    ++n;
  }
  return n;
}

}  // namespace baton
