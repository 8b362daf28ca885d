// The scheduling policy the router actor runs, as a plain class: waiting and running
// queues, logical KV block tables (identical on every stage), continuous batching with
// chunked prefill, up to `micro_batches` steps in flight over disjoint sequences, and
// preemption by recompute. It deals in token ids only; text, clients and actors stay in
// the router. Block accounting is block_allocator's, with prefix sharing on top
// (prefix_cache.hpp); the policy is here.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "runtime/serving/outcome.hpp"
#include "runtime/serving/prefix_cache.hpp"
#include "runtime/serving/sampler.hpp"
#include "runtime/serving/serving_config.hpp"

namespace baton {

/// The scheduler reads the serving settings as they are (micro_batches resolved: >= 1).
using scheduler_config = serving_config;

/// A request as the scheduler needs it.
struct sched_request {
  uint64_t id = 0;
  std::vector<int32_t> prompt;
  int32_t max_tokens = 128;
  sampling_params sampling;
  bool ignore_eos = false;
  /// Another choice of the same request (its first sequence's id), 0 for none: while
  /// that sequence has not computed its prompt this one waits for it, then forks from
  /// it (shares its prompt's KV: full blocks by reference, the partial one copied) and
  /// computes only the prompt's last token, for its own first draw. When the parent has
  /// gone or is past its prompt, or the blocks are short at the fork, it runs as any
  /// request (with prefix caching it still shares the cached blocks).
  uint64_t fork_of = 0;
};

/// One sequence's share of a step.
struct sched_slice {
  uint64_t seq_id = 0;
  int32_t first_pos = 0;
  std::vector<int32_t> tokens;
  std::vector<int32_t> block_table;
  bool want_token = false;
  sampling_params sampling;
  std::vector<int32_t> history_tail;
  int32_t draw = 0;  ///< the sampled token's index among the sequence's generated ones
};

struct sched_step {
  uint64_t step_id = 0;
  std::vector<sched_slice> slices;
  /// KV blocks every stage copies (copy_from[i] into copy_to[i], its own layers) before
  /// the step runs: forks' partial blocks (copy-on-write).
  std::vector<int32_t> copy_from;
  std::vector<int32_t> copy_to;
};

/// What a finished step produced for one request.
struct sched_output {
  uint64_t id = 0;
  int32_t token = -1;          ///< the new token, -1 when none
  finish_reason finish = finish_reason::none;  ///< none while running; stop, length, cancelled
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int32_t cached_tokens = 0;   ///< prompt tokens served from the prefix cache
};

struct sched_counters {
  uint64_t steps = 0;
  uint64_t preemptions = 0;
  uint64_t prompt_tokens = 0;
  uint64_t generated_tokens = 0;
  uint64_t cached_prompt_tokens = 0;  ///< from the prefix cache
  uint64_t prefix_hits = 0;           ///< cached blocks handed to sequences
  uint64_t evictions = 0;             ///< cached blocks dropped for fresh ones
  uint64_t recomputed_tokens = 0;     ///< tokens whose KV a preemption dropped
  uint64_t resize_preemptions = 0;    ///< of the preemptions, those a smaller pool made
  uint64_t forks = 0;                 ///< sequences forked from another's prompt
  uint64_t forked_tokens = 0;         ///< prompt tokens they did not compute
};

/// What the scheduler was told and what it decided, in order: enough to replay a live
/// run's decisions on another scheduler (sched_trace.hpp's replay_trace).
struct trace_event {
  enum class kind : uint8_t {
    add,       ///< request
    step,      ///< next_step() gave step `id`: seq_ids with n_tokens each
    no_step,   ///< next_step() gave none
    done,      ///< on_step_done(id, seq_ids, tokens)
    cancel,    ///< cancel(id)
    finish,    ///< finish(id)
    requeue,   ///< requeue_all()
    reset,     ///< reset_pool(id = the blocks)
    other,     ///< a reshard's resize: not replayable
  };
  kind what = kind::add;
  sched_request request;
  uint64_t id = 0;
  std::vector<uint64_t> seq_ids;
  std::vector<int32_t> n_tokens;
  std::vector<int32_t> tokens;
};

class scheduler {
 public:
  scheduler(scheduler_config cfg, std::vector<int32_t> eog_ids);

  /// `fn` hears every call that changes the schedule, and every decision, in order.
  void set_trace(std::function<void(const trace_event&)> fn) { trace_ = std::move(fn); }

  /// Queues a request (FCFS). The caller (admission) has checked it can ever fit.
  void add(sched_request r);
  /// Stops a request: at once when it is not in a step, else when its step returns.
  /// Returns the final output when it ended now.
  std::optional<sched_output> cancel(uint64_t id);

  /// A reshard's new pipeline may keep a different number of steps in flight (>= 1);
  /// the steps already in flight are not affected.
  void set_micro_batches(int32_t n) {
    BATON_ASSERT(n >= 1);
    cfg_.micro_batches = n;
  }
  /// A reshard's new KV pool of `n_blocks` blocks, with no step in flight: the youngest
  /// running sequences are preempted (recomputed later, tokens kept) until the rest fit,
  /// and the pool is laid out anew (prefix_cache::resized), held aside until
  /// commit_resize() or drop_resize(). `from` / `to`: each kept block's old and new id,
  /// where its KV moves on every stage. With `recompute` no KV moves: every running
  /// sequence is preempted and the prefix cache emptied. False (nothing preempted) when
  /// steps are in flight.
  bool prepare_resize(int32_t n_blocks, bool recompute, std::vector<int32_t>& from,
                      std::vector<int32_t>& to);
  /// The prepared pool replaces the running one (the new stages hold its blocks).
  void commit_resize();
  /// The prepared pool is dropped (the reshard failed); the preempted sequences wait.
  void drop_resize();
  /// The next micro-batch, when one can go: fewer than micro_batches in flight and some
  /// sequence not in flight has tokens to compute.
  std::optional<sched_step> next_step();
  /// Takes a returned step: sampled tokens per sequence (seq ids and tokens aligned).
  std::vector<sched_output> on_step_done(uint64_t step_id, const std::vector<uint64_t>& seq_ids,
                                         const std::vector<int32_t>& tokens);
  /// Ends a sequence from outside (a stop string matched in its text).
  void finish(uint64_t id);
  /// Ends every sequence of a failed step; returns their ids.
  std::vector<uint64_t> fail_step(uint64_t step_id);
  /// Forgets every request, waiting, running or in a step, and frees all their blocks:
  /// a stage died, so the steps in flight will never return. Returns their ids (in id
  /// order). Afterwards idle() holds and every block is available again; a result for
  /// one of the abandoned steps must not be passed to on_step_done.
  std::vector<uint64_t> abort_all();
  /// A stage was lost: every running sequence, those in a step that will never return
  /// included, goes back to the front of the waiting queue (oldest first, ahead of the
  /// requests that never ran) to be recomputed from its prompt and the tokens generated
  /// so far; the steps in flight are forgotten (their results must not reach
  /// on_step_done) and every block is freed. A sequence cancelled inside such a step
  /// ends now: its final output is returned. `replayed`: the sequences requeued.
  std::vector<sched_output> requeue_all(std::vector<uint64_t>& replayed);
  /// A new KV pool of `n_blocks` blocks with nothing cached (the new stages hold no KV);
  /// only when no sequence holds a block (after requeue_all).
  void reset_pool(int32_t n_blocks);

  int32_t n_running() const { return static_cast<int32_t>(running_.size()); }
  /// Waiting to run: queued, or waiting to fork from another choice's prompt.
  int32_t n_waiting() const { return static_cast<int32_t>(waiting_.size()) + n_fork_waiting_; }
  int32_t n_in_flight() const { return static_cast<int32_t>(in_flight_.size()); }
  /// Blocks a new allocation may take (free or cached-but-unreferenced).
  int32_t n_free_blocks() const { return blocks_.n_available(); }
  int32_t n_blocks() const { return blocks_.n_blocks(); }
  /// Blocks whose KV is live or cached (what a reshard must move), ascending.
  std::vector<int32_t> held_blocks() const { return blocks_.held_blocks(); }
  sched_counters counters() const;
  bool idle() const { return running_.empty() && waiting_.empty() && in_flight_.empty(); }

 private:
  struct seq {
    sched_request req;
    std::vector<int32_t> tokens;  // prompt + generated
    int32_t n_computed = 0;       // tokens whose K/V are in the cache
    int32_t n_generated = 0;
    int32_t cached_tokens = 0;    // of the prompt, from the prefix cache (first admission)
    bool admitted_once = false;
    bool in_flight = false;
    bool cancelled = false;
    bool fork_waiting = false;    // in its parent's `forks`, not queued
    uint64_t order = 0;           // arrival: larger is younger
    std::vector<uint64_t> forks;  // choices waiting for this one's prompt
  };

  /// next_step() but for the trace.
  std::optional<sched_step> decide_step();
  bool ensure_blocks(seq& s, int64_t n_tokens);
  /// Gives a waiting sequence its blocks for every known token, sharing cached ones.
  bool admit_blocks(seq& s);
  bool preempt_youngest(uint64_t requester);
  void release_blocks(seq& s);
  /// The parent computed its prompt: its waiting choices fork from it.
  void fork_children(seq& parent);
  /// Choices waiting for `parent` run on their own (it ends before its prompt did).
  void orphan_children(seq& parent);
  /// Running sequences whose fork copy no step carried yet go back to the queue, to be
  /// recomputed (a pool laid out anew would not hold what they copy).
  void requeue_uncopied();
  void insert_running(uint64_t id);
  void erase(uint64_t id);
  sched_slice make_slice(seq& s, int32_t n);

  // -- member variables -------------------------------------------------------
  scheduler_config cfg_;
  std::vector<int32_t> eog_;
  prefix_cache blocks_;
  std::optional<prefix_cache> resized_;  // prepare_resize's pool, until commit or drop
  std::map<uint64_t, seq> seqs_;
  std::deque<uint64_t> waiting_;
  std::vector<uint64_t> running_;  // in arrival order
  std::map<uint64_t, std::vector<std::pair<uint64_t, int32_t>>> in_flight_;  // step -> (seq, n)
  uint64_t next_step_id_ = 1;
  uint64_t next_order_ = 0;
  int32_t n_fork_waiting_ = 0;
  // forks' copies for the next step: from, to, and the child that needs them
  std::vector<int32_t> copy_from_;
  std::vector<int32_t> copy_to_;
  std::vector<uint64_t> copy_for_;
  sched_counters counters_;
  std::function<void(const trace_event&)> trace_;
};

}  // namespace baton
