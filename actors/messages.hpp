// Every message type and atom the actors exchange, in one header, each with an
// `inspect()` and a registered type name so they cross process boundaries unchanged
// (CAF 0.17: unannounced types compile but fail at run time across processes).
// Activations never travel here: they go through runtime/transport.
#pragma once

#include <caf/all.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/serving/outcome.hpp"
#include "runtime/serving/sampler.hpp"

namespace baton {

// -- atoms (at most 10 characters) ----------------------------------------------

using step_atom = caf::atom_constant<caf::atom("step")>;
using result_atom = caf::atom_constant<caf::atom("result")>;
using submit_atom = caf::atom_constant<caf::atom("submit")>;
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;
using release_atom = caf::atom_constant<caf::atom("release")>;
using done_atom = caf::atom_constant<caf::atom("done")>;
using stats_atom = caf::atom_constant<caf::atom("stats")>;
using event_atom = caf::atom_constant<caf::atom("event")>;
using input_atom = caf::atom_constant<caf::atom("input")>;
using shutdown_atom = caf::atom_constant<caf::atom("shutdown")>;
using refuse_atom = caf::atom_constant<caf::atom("refuse")>;
using pause_atom = caf::atom_constant<caf::atom("pause")>;
using switch_atom = caf::atom_constant<caf::atom("switch")>;
using prepare_atom = caf::atom_constant<caf::atom("prepare")>;
using kv_ship_atom = caf::atom_constant<caf::atom("kvship")>;
using kv_take_atom = caf::atom_constant<caf::atom("kvtake")>;
using commit_atom = caf::atom_constant<caf::atom("commit")>;
using abort_atom = caf::atom_constant<caf::atom("abort")>;
using lost_atom = caf::atom_constant<caf::atom("lost")>;
using recover_atom = caf::atom_constant<caf::atom("recover")>;
using fail_atom = caf::atom_constant<caf::atom("fail")>;
using ping_atom = caf::atom_constant<caf::atom("ping")>;
using fence_atom = caf::atom_constant<caf::atom("fence")>;
using quiesce_atom = caf::atom_constant<caf::atom("quiesce")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using constrain_atom = caf::atom_constant<caf::atom("constrain")>;

// -- outcomes ----------------------------------------------------------------------

// finish_reason (stop / length / cancelled / error) and refusal (the kinds of refusal
// and failure) are in runtime/serving/outcome.hpp: the scheduler and the front end's
// status table read them without the actor system.

/// The admission actor's verdict: admitted, not now, or not this request (the KV
/// accounting's ok / later / never). A full queue answers never with queue_full and a
/// retry-after hint, which the front end has always sent as a 429: nothing answers
/// later yet.
enum class admit : uint8_t {
  ok,
  later,
  never,
};

/// The name ("ok", "later", "never"); also how CAF prints it.
std::string to_string(admit x);

/// Whether the pipeline can run, as the router last saw it.
enum class pipeline_state : uint8_t {
  running,     ///< every stage is there
  stage_down,  ///< a stage died or left while the head ran: nothing can run
  stopped,     ///< a stage went away after the head began stopping (expected)
  recovering,  ///< a stage's rank was lost: its layers move to survivors; requests wait
};

/// The name ("running", ...); also how CAF prints it.
std::string to_string(pipeline_state x);

/// Whether requests are taken: running, or recovering (they queue meanwhile).
inline bool can_serve(pipeline_state x) {
  return x == pipeline_state::running || x == pipeline_state::recovering;
}

// -- requests and events -----------------------------------------------------------

/// What holds a sequence's sampling beyond its parameters: a JSON Schema the reply must
/// match (the last stage compiles it into a grammar and masks every token with it) and
/// logit biases. It goes to the last stage once per sequence (and again to a new last
/// stage after a reshard or a recovery, with the tokens generated so far, which rebuild
/// the grammar's state), never in a step descriptor.
struct output_constraint {
  std::string json_schema;        ///< empty: none
  bool strict = false;            ///< a keyword the grammar cannot enforce is refused
  std::vector<int32_t> bias_ids;  ///< logit_bias: ids, and what their logits get added
  std::vector<float> bias_values;
  int32_t max_tokens = 0;         ///< the reply's budget: the document closes within it

  bool empty() const { return json_schema.empty() && bias_ids.empty(); }
};

/// A generation request as the router sees it: already tokenized.
struct gen_request {
  uint64_t id = 0;
  std::string key;                  ///< API key or client id, for per-key quotas
  std::vector<int32_t> prompt;      ///< token ids, BOS included
  int32_t max_tokens = 128;
  sampling_params sampling;
  std::vector<std::string> stop;    ///< stop strings
  bool ignore_eos = false;
  output_constraint constraint;
  /// Choices: n sequences with ids id .. id + n - 1 (submit reserves them), forked from
  /// one prefill of the prompt; choice i samples with seed sampling.seed + i. Admission
  /// counts n sequences; the client hears each choice's events (gen_event::index) and
  /// n final events.
  int32_t n = 1;
};

/// One streamed event of a request: a piece of text (with its token), or the end.
struct gen_event {
  uint64_t request_id = 0;          ///< the request's id (every choice's events carry it)
  int32_t index = 0;                ///< the choice, 0 .. n - 1
  std::string text;                 ///< decoded text completed by this token (may be empty)
  int32_t token = -1;               ///< -1 on the final event
  finish_reason finish = finish_reason::none;  ///< none on every event but the last
  std::string error;                ///< for people, when finish is error
  /// Set on error events (stage_down, shutting_down, invalid, internal), and on
  /// cancelled ones to shutting_down when the server's stop cancelled the request.
  refusal error_kind = refusal::none;
  int32_t prompt_tokens = 0;        ///< on the final event
  int32_t completion_tokens = 0;
  int32_t cached_tokens = 0;        ///< prompt tokens served from the prefix cache
  float logit = 0;                  ///< the token's raw logit (exact: invariance tests)
  float logprob = 0;                ///< its log-probability under the raw logits
  std::vector<int32_t> top_ids;     ///< the most likely tokens (sampling.top_logprobs of them)
  std::vector<float> top_logprobs;  ///< and their log-probabilities, most likely first
};

/// The admission actor's answer: its verdict, and for never the kind of refusal (what
/// callers compare) and a message naming the numbers (what people read).
struct admission {
  admit verdict = admit::ok;
  refusal reason = refusal::none;   ///< for never: queue_full, key_quota, invalid, ...
  std::string message;              ///< for never: "queue full", "context length: ...", ...
  int32_t retry_after_s = 0;        ///< a hint with queue_full and key_quota
};

// -- the pipeline's shape -------------------------------------------------------------
/// Where one stage runs.
struct stage_setup {
  int32_t rank = 0;
  int64_t first_layer = 0;
  int64_t last_layer = 0;              ///< one past
  int32_t n_threads = 0;               ///< 0: the rank's threads split over its stages
  std::string device = "cpu";          ///< "cpu" or "cuda:N" (of the rank's host)
};
// -- the pipeline step ---------------------------------------------------------------

/// The tokens of one sequence in a step.
struct seq_slice {
  uint64_t seq_id = 0;
  int32_t first_pos = 0;            ///< position of tokens[0] in the sequence
  std::vector<int32_t> tokens;
  std::vector<int32_t> block_table; ///< logical blocks, identical on every stage
  bool want_token = false;          ///< the last stage samples after the last token
  sampling_params sampling;         ///< read by the last stage
  std::vector<int32_t> history_tail;///< recent tokens for penalties (last stage)
  int32_t draw = 0;                 ///< the sampled token's index among the generated ones
};

/// A micro-batch descriptor the router sends to every shard.
struct step_desc {
  uint64_t step_id = 0;
  std::vector<seq_slice> seqs;
  /// KV blocks each stage copies within its own layers before running the step
  /// (copy_from[i] into copy_to[i]): a forked choice's copy of its parent's partial block.
  std::vector<int32_t> copy_from;
  std::vector<int32_t> copy_to;
};

/// What the last stage sends back: one sampled token per slice that wanted one, plus
/// when each stage started and finished (for the overlap test and per-stage metrics).
struct step_result {
  uint64_t step_id = 0;
  uint64_t epoch = 0;               ///< the pipeline that ran it (an older one's is dropped)
  std::vector<uint64_t> seq_ids;
  std::vector<int32_t> tokens;
  std::vector<float> logits;        ///< each sampled token's raw logit
  std::vector<float> logprobs;      ///< and its log-probability
  std::vector<int32_t> top_counts;  ///< alternatives reported per sampled token
  std::vector<int32_t> top_ids;     ///< all of them, flattened
  std::vector<float> top_logprobs;
  std::string error;                ///< a stage failed: every sequence of the step errs
};

/// A shard's step timing, microseconds since the shard's start.
struct step_timing {
  uint64_t step_id = 0;
  int32_t stage = 0;
  int64_t begin_us = 0;
  int64_t end_us = 0;
  // what the step did, for `baton bench calibrate`'s fit of live steps
  int32_t n_tokens = 0;
  int64_t positions = 0;  ///< attended positions over all its tokens
  int32_t rows = 0;       ///< sampled rows (logits)
};

/// The router's counters, for /metrics and tests.
struct router_stats {
  int32_t running = 0;
  int32_t waiting = 0;
  int32_t in_flight = 0;
  int32_t free_blocks = 0;
  int32_t total_blocks = 0;
  uint64_t steps = 0;
  uint64_t preemptions = 0;
  uint64_t prompt_tokens = 0;
  uint64_t generated_tokens = 0;
  uint64_t cached_prompt_tokens = 0;
  uint64_t prefix_hits = 0;
  uint64_t evictions = 0;
  uint64_t control_bytes = 0;       ///< CAF bytes to and from remote shards (serialized)
  uint64_t remote_steps = 0;        ///< steps that went to a remote shard
  pipeline_state state = pipeline_state::running;
  std::string down_message;         ///< when not running: which stage went and why (for people)
  int32_t down_rank = -1;           ///< the rank of that stage
  uint64_t epoch = 0;               ///< pipelines switched to so far (reshards)
  bool paused = false;              ///< no new steps: a reshard is under way
  uint64_t recomputed_tokens = 0;   ///< tokens whose KV preemptions dropped (computed again)
  uint64_t stage_failures = 0;      ///< ranks holding a stage that were lost (died or hung)
  uint64_t recoveries_ok = 0;       ///< lost stages replaced, their requests replayed
  uint64_t recoveries_failed = 0;   ///< the survivors could not take the lost layers
  uint64_t requests_replayed = 0;   ///< requests recomputed after a loss
  double last_recovery_seconds = 0; ///< detection to the last replayed request's next token
  uint64_t resize_preemptions = 0;  ///< preemptions a reshard's smaller KV pool made
  uint64_t forks = 0;               ///< choices forked from another's prompt (n > 1)
  uint64_t forked_tokens = 0;       ///< prompt tokens those did not compute
};

// -- inspect ----------------------------------------------------------------------------

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sampling_params& x) {
  return f(caf::meta::type_name("sampling_params"), x.temperature, x.top_k, x.top_p, x.min_p,
           x.repeat_penalty, x.presence_penalty, x.frequency_penalty, x.penalty_last_n, x.seed,
           x.top_logprobs, x.logprobs);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, output_constraint& x) {
  return f(caf::meta::type_name("output_constraint"), x.json_schema, x.strict, x.bias_ids,
           x.bias_values, x.max_tokens);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, gen_request& x) {
  return f(caf::meta::type_name("gen_request"), x.id, x.key, x.prompt, x.max_tokens, x.sampling,
           x.stop, x.ignore_eos, x.constraint, x.n);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, gen_event& x) {
  return f(caf::meta::type_name("gen_event"), x.request_id, x.index, x.text, x.token, x.finish,
           x.error, x.error_kind, x.prompt_tokens, x.completion_tokens, x.cached_tokens, x.logit,
           x.logprob, x.top_ids, x.top_logprobs);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, admission& x) {
  return f(caf::meta::type_name("admission"), x.verdict, x.reason, x.message, x.retry_after_s);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, stage_setup& x) {
  return f(caf::meta::type_name("stage_setup"), x.rank, x.first_layer, x.last_layer, x.n_threads,
           x.device);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, seq_slice& x) {
  return f(caf::meta::type_name("seq_slice"), x.seq_id, x.first_pos, x.tokens, x.block_table,
           x.want_token, x.sampling, x.history_tail, x.draw);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, step_desc& x) {
  return f(caf::meta::type_name("step_desc"), x.step_id, x.seqs, x.copy_from, x.copy_to);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, step_result& x) {
  return f(caf::meta::type_name("step_result"), x.step_id, x.epoch, x.seq_ids, x.tokens, x.logits,
           x.logprobs, x.top_counts, x.top_ids, x.top_logprobs, x.error);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, step_timing& x) {
  return f(caf::meta::type_name("step_timing"), x.step_id, x.stage, x.begin_us, x.end_us,
           x.n_tokens, x.positions, x.rows);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, router_stats& x) {
  return f(caf::meta::type_name("router_stats"), x.running, x.waiting, x.in_flight,
           x.free_blocks, x.total_blocks, x.steps, x.preemptions, x.prompt_tokens,
           x.generated_tokens, x.cached_prompt_tokens, x.prefix_hits, x.evictions,
           x.control_bytes, x.remote_steps, x.state, x.down_message, x.down_rank, x.epoch,
           x.paused, x.recomputed_tokens, x.stage_failures, x.recoveries_ok,
           x.recoveries_failed, x.requests_replayed, x.last_recovery_seconds,
           x.resize_preemptions, x.forks, x.forked_tokens);
}

// -- actor interfaces ---------------------------------------------------------------------

/// A layer shard: runs its layers for each step once its input activations are there
/// (input: the transport announced them); drops a finished sequence's sampler; constrain: a sequence's output constraint and the tokens it generated so far (last stage); shutdown
/// ends the shard's process (ranks other than the head wait for it); its flag says that
/// a rank of the job died, so MPI cannot be finalized. Stats: every step's timing kept,
/// or (with a count n) the last n of them.
using shard_actor =
    caf::typed_actor<caf::reacts_to<step_atom, step_desc>, caf::reacts_to<input_atom, uint64_t>,
                     caf::reacts_to<release_atom, uint64_t>,
                     caf::reacts_to<constrain_atom, uint64_t, output_constraint,
                                    std::vector<int32_t>>,
                     caf::replies_to<shutdown_atom, bool>::with<bool>,
                     caf::replies_to<stats_atom>::with<std::vector<step_timing>>,
                     caf::replies_to<stats_atom, int32_t>::with<std::vector<step_timing>>>;

/// Every rank's agent: how the head reaches a rank apart from its shards, one holding no
/// stage (a standby rank) included. Shutdown: the job is over (true when a rank of the
/// job died). A reshard to epoch E: prepare makes and publishes this rank's stages of
/// the new placement (empty KV pools of the given blocks; the error, or each stage's
/// port, 0 where not here); kvship sends the KV rows of the listed layers of blocks
/// `from` to the listed ranks, for blocks `to` there, over the data plane (into this
/// rank's prepared stages where the rank is this one); kvtake waits for the listed
/// layers' rows and writes them into blocks `to` (error, bytes); commit
/// makes the prepared stages this rank's and releases the old ones; abort drops them.
using agent_actor = caf::typed_actor<
    caf::replies_to<shutdown_atom, bool>::with<bool>,
    caf::replies_to<prepare_atom, uint64_t, std::vector<stage_setup>, int32_t>::with<
        std::string, std::vector<int32_t>>,
    caf::replies_to<kv_ship_atom, uint64_t, std::vector<int64_t>, std::vector<int32_t>,
                    std::vector<int32_t>, std::vector<int32_t>>::with<std::string, uint64_t>,
    caf::replies_to<kv_take_atom, uint64_t, std::vector<int64_t>,
                    std::vector<int32_t>>::with<std::string, uint64_t>,
    caf::replies_to<commit_atom, uint64_t>::with<bool>,
    caf::replies_to<abort_atom, uint64_t>::with<bool>,
    caf::replies_to<quiesce_atom, uint64_t, std::vector<int32_t>>::with<bool>>;

/// Every rank's pulse, apart from its agent and shards (which may be busy for minutes):
/// ping (the head's epoch) answers at once with this rank's, and the first ping makes it
/// watch the head (a rank whose head died leaves the job). Fence: the head gave up on
/// this rank (it did not answer in time) and runs epoch E without it: the rank leaves.
/// Shutdown: the head ends the job; its watcher's going away is no lost head.
using pulse_actor = caf::typed_actor<caf::replies_to<ping_atom, uint64_t>::with<uint64_t>,
                                     caf::reacts_to<fence_atom, uint64_t>,
                                     caf::reacts_to<shutdown_atom>>;
/// A request's client (local_server's, one per request): the router sends it every
/// event of the request, the last one with its finish reason set; then it quits.
using client_actor = caf::typed_actor<caf::reacts_to<event_atom, gen_event>>;

/// The router: takes admitted requests (events go to the client actor), cancels, and
/// the shards' step results. Shutdown: the head began stopping, so a stage that goes
/// down from now on is expected, not a failure.
using router_actor = caf::typed_actor<caf::reacts_to<submit_atom, gen_request, client_actor>,
                                      caf::reacts_to<cancel_atom, uint64_t>,
                                      caf::reacts_to<result_atom, step_result>,
                                      caf::reacts_to<shutdown_atom>,
                                      caf::replies_to<stats_atom>::with<router_stats>,
                                      caf::replies_to<pause_atom, int32_t, bool>::with<
                                          bool, std::vector<int32_t>, std::vector<int32_t>>,
                                      caf::replies_to<switch_atom, std::vector<shard_actor>,
                                                      std::vector<int32_t>, int32_t>::with<uint64_t>,
                                      caf::reacts_to<lost_atom, int32_t, std::string>,
                                      caf::replies_to<recover_atom, std::vector<shard_actor>,
                                                      std::vector<int32_t>, int32_t>::with<uint64_t>,
                                      caf::reacts_to<fail_atom, std::string>>;

/// The admission actor: ok (forwarded to the router) or never (with the kind of refusal
/// and its message); the router reports finished requests back with done; refuse makes it refuse
/// every later request with that kind and message (a stage died, the server stops).
using admission_actor =
    caf::typed_actor<caf::replies_to<submit_atom, gen_request, client_actor>::with<admission>,
                     caf::reacts_to<done_atom, uint64_t>,
                     caf::reacts_to<refuse_atom, refusal, std::string>>;

/// Registers every message type with its name; call before the actor system starts.
void add_message_types(caf::actor_system_config& cfg);

}  // namespace baton
