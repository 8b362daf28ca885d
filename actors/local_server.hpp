// The in-process API over the actor system, what the front end and `baton run` use:
// submit(request) gives a stream of events (text pieces with their token ids, then a
// final event with the finish reason: stop / length / cancelled / error with its message);
// cancel(id) stops a request and frees its blocks. The stages live in this process
// (activations handed over in memory) or spread over MPI ranks: then every rank builds
// one local_server, which spawns that rank's shards and publishes them on an ephemeral
// port; the endpoints are exchanged through the link's allgather (MPI_Allgather; one
// JSON object per rank, read as hostile input: runtime/transport/gathered.hpp), and
// the head (rank 0) connects to the remote shards with remote_actor and runs the router
// and the admission actor. Other ranks only serve their shards until the head's
// shutdown (or a signal) ends them. What a front end shows (counters, per-stage step
// times) it reads from snapshot(), which the router and a background poller keep
// current, so no reader's thread ever waits on an actor.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <string>
#include <vector>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "actors/messages.hpp"
#include "actors/recovery_plan.hpp"
#include "kernels/cpu/isa.hpp"
#include "runtime/compute/stage_compute.hpp"
#include "runtime/model/model_config.hpp"
#include "runtime/serving/scheduler.hpp"
#include "runtime/serving/serving_config.hpp"
#include "runtime/text/tokenizer.hpp"
#include "runtime/transport/transport.hpp"

namespace baton {

/// Stages that run the model's layers [0, n_layer) in order, each on a rank of `world`:
/// the error names the stage that does not.
result<void> check_stages(const std::vector<stage_setup>& stages, int64_t n_layer,
                          int32_t world);
/// Stages of `stages` on `rank`.
int32_t stages_on(const std::vector<stage_setup>& stages, int32_t rank);
/// The stage of `stages` that holds `layer`, or -1.
int32_t stage_of_layer(const std::vector<stage_setup>& stages, int64_t layer);

/// How this process is part of a job spanning several ranks (defaults: alone).
struct cluster_link {
  int32_t rank = 0;
  int32_t world = 1;
  std::string bind_host = "127.0.0.1"; ///< the address other ranks reach this one at
  /// Gathers one string from every rank, in rank order (MPI_Allgather); only with world > 1.
  std::function<std::vector<std::string>(const std::string&)> allgather;
  std::shared_ptr<transport> data;     ///< the activations' transport; null: in memory
  /// The transport moves activations device to device between GPU stages of different
  /// ranks (NCCL): a GPU stage whose successor is a GPU stage elsewhere keeps its output
  /// on the device.
  bool device_link = false;
  /// Called on the head when a stage's rank is found dead (its transfers are abandoned).
  std::function<void(int32_t rank)> on_rank_down;
  /// A rank that answers no heartbeat for this long is lost (hung, or its host cut off).
  std::chrono::milliseconds stage_timeout{30000};
  /// The head's placement without the `lost` ranks (budgets checked); null:
  /// recovery_candidates' first, with the KV pool as it is.
  std::function<result<recovery_plan>(const std::vector<stage_setup>& running,
                                      const std::set<int32_t>& lost, int32_t n_blocks)>
      replan;
};

/// What a local_server is built with: the serving settings, where the stages run, and
/// the compute threads and kernels.
struct server_options {
  serving_config serving;
  int32_t n_stages = 1;
  std::vector<stage_setup> stages;     ///< empty: n_stages on rank 0, layers split evenly
  int32_t n_threads = 2;               ///< in all, split over the stages
  cpu::isa kernels = cpu::best_isa();
  bool repack = true;                  ///< stage_compute_options::repack (--no-repack: false)
  /// The router's scheduler trace (router_config::trace); the head only.
  std::function<void(const trace_event&)> trace;
};

/// What the front end reads without asking an actor (/health, /metrics).
struct serving_snapshot {
  router_stats stats;                     ///< as the router last published them
  std::vector<double> stage_step_seconds; ///< [n_stages] mean over each stage's last 256 steps
  uint64_t reshards_ok = 0;               ///< reshards applied
  uint64_t reshards_refused = 0;          ///< refused or rolled back
  double last_reshard_pause_seconds = 0;
  uint64_t reshard_kv_bytes_moved = 0;    ///< over all reshards
};

/// How a reshard treats the pipeline's settings and its KV (local_server::reshard).
struct reshard_settings {
  int32_t micro_batches = 0;  ///< > 0: the new pipeline's steps in flight (0: as before)
  /// > 0: the new KV pool's blocks (0: as before; at least one full-context sequence's)
  int32_t n_blocks = 0;
  /// No KV moves: every running sequence is preempted and recomputed on the new stages,
  /// and the prefix cache starts empty (vLLM's way after a restart; slower, no transfer).
  bool recompute_kv = false;
};

/// What a reshard did (local_server::reshard).
struct reshard_report {
  uint64_t epoch = 0;            ///< the pipeline's number from now on
  double prepare_seconds = 0;    ///< making the new stages while serving went on
  double pause_seconds = 0;      ///< no step ran: quiesce, KV moved, switch
  double drain_seconds = 0;      ///< of the pause: the steps in flight finishing
  double kv_seconds = 0;         ///< of the pause: the KV rows moving
  uint64_t kv_bytes_moved = 0;  ///< written into new stages (stages kept as they were move none)
  uint64_t kv_bytes_sent = 0;   ///< of those, over the data plane to another rank
  int32_t n_blocks = 0;          ///< the KV pool's blocks from now on
  uint64_t preempted = 0;        ///< sequences preempted to fit a smaller pool (recomputed later)
};

/// The events of one request, in order; thread-safe.
class event_stream {
 public:
  void push(gen_event e);
  /// The next event, or nothing after `timeout`.
  std::optional<gen_event> next(std::chrono::milliseconds timeout = std::chrono::minutes(10));
  /// The next event if one is there; never waits.
  std::optional<gen_event> try_next();
  /// `fn` runs (on the pushing thread) after every push, and at once if events wait:
  /// how an asynchronous front end learns that there is something to send.
  void on_push(std::function<void()> fn);

 private:
  // -- member variables -------------------------------------------------------
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<gen_event> q_;
  std::function<void()> on_push_;
};

class local_server {
 public:
  static result<std::unique_ptr<local_server>> create(std::shared_ptr<const model> m,
                                                      std::shared_ptr<const tokenizer> tok,
                                                      server_options opts,
                                                      cluster_link link = {});
  ~local_server();

  /// Rank 0 runs the router; only the head may submit.
  bool head() const { return link_.rank == 0; }
  /// Other ranks: waits until the head says the job is over; after `stop` turns true
  /// (a signal), for 10 s more at most.
  void wait_for_shutdown(const std::atomic<bool>& stop);
  /// A rank of the job died (the head saw its shard go down, or told this rank so).
  bool peer_died();

  /// Submits a request (its id is assigned when 0). A refusal arrives on the stream as a
  /// final event with finish_reason::error, the admission's message in `error` and its
  /// kind in `error_kind`.
  std::shared_ptr<event_stream> submit(gen_request r, admission* decision = nullptr);
  void cancel(uint64_t id);
  /// Asks the router (a blocking request: not for an event loop; see snapshot()).
  router_stats stats() const;
  /// Stages of the pipeline now.
  size_t n_stages() const { return current_shards().size(); }
  /// The router's counters as it last published them (after every change) and each
  /// stage's mean step seconds, polled by a background thread at most once a second
  /// from the first call on (zeros until its first round; a stage that does not answer
  /// keeps its last value). Never sends a message or waits on an actor; any thread.
  serving_snapshot snapshot() const;
  /// The head begins stopping (a signal, the end of the command): a stage that goes
  /// down from now on is expected (no "is down" line; its requests end with "the server
  /// is shutting down", refusal::shutting_down), and new requests are refused with
  /// refusal::shutting_down. Returns at once; any thread; nothing on other ranks.
  void begin_stop();
  /// Changes the pipeline's shape while it serves (head; the stages may move to any rank,
  /// a standby one included):
  /// `stages` (checked as at start; a layer keeps its kind of device) are made while
  /// steps go on, then the router pauses, the steps in flight finish, every layer's KV
  /// rows move from the old stage to the new one (over the data plane between ranks),
  /// the new shards take over under a new epoch and the old ones are released. No request is lost or changed: a sequence's
  /// tokens are those of the undisturbed run. A failure before the switch leaves the
  /// old pipeline serving and says what failed; one reshard at a time.
  /// `busy` (when given) turns true when the refusal is another reshard under way.
  /// `how.n_blocks` resizes the KV pool: when the blocks in use do not fit, the youngest
  /// sequences are preempted and recomputed later, and every stage's blocks are laid out
  /// anew.
  result<reshard_report> reshard(std::vector<stage_setup> stages, bool* busy = nullptr,
                                 reshard_settings how = {});
  /// The ranks the head gave up on (died, hung past the stage timeout, fenced).
  std::set<int32_t> lost_ranks() const;
  /// Counts a reshard refused before it reached reshard() (a file that does not plan).
  void note_reshard_refused();
  /// A stage's actor (another rank's: its proxy); for tests that stop one.
  shard_actor stage_actor(int32_t stage) const {
    return current_shards().at(static_cast<size_t>(stage));
  }
  /// Every step's begin and end on one stage.
  std::vector<step_timing> timings(int32_t stage);
  const server_options& options() const { return opts_; }

 private:
  /// What the router's thread, the poller and readers share (it may outlive the
  /// server: a multi-rank job leaves its actor system running at the end).
  struct shared_view {
    std::mutex mu;
    std::condition_variable cv;
    serving_snapshot snap;
    admission_actor admission;  ///< told to refuse when a stage goes down
    bool stopping = false;      ///< begin_stop() was called
    bool poll_started = false;
    bool poll_stop = false;
    bool rank_died = false;     ///< a stage's rank died or left while the head ran
  };

  local_server(std::shared_ptr<const model> m, std::shared_ptr<const tokenizer> tok,
               server_options opts, cluster_link link);
  result<void> start();
  /// What make_stage_compute gets for stage `s` of `stages` (`n_local` of them here), with
  /// a KV pool of `n_blocks` blocks.
  stage_compute_options compute_options(const std::vector<stage_setup>& stages, int32_t s,
                                        int32_t n_local, int32_t n_blocks) const;
  /// Spawns stage `s` of `stages` over `compute`, in the pipeline of `epoch`.
  shard_actor spawn_stage(const std::vector<stage_setup>& stages, int32_t s,
                          std::shared_ptr<stage_compute> compute, uint64_t epoch);
  /// reshard() but for the counters it keeps.
  result<reshard_report> apply_reshard(std::vector<stage_setup> stages, bool* busy,
                                       reshard_settings how);
  /// Whether `stages` can replace the running ones: the head, a chain over every layer on
  /// ranks of the world, each layer on its kind of device, and under --nccl the same GPU
  /// ranks in pipeline order.
  result<void> check_reshard(const std::vector<stage_setup>& stages) const;
  /// The head's side of a reshard to `epoch`: each rank's agent prepares, KV moves, the
  /// router switches, every rank commits (or, on a failure before the switch, aborts).
  result<reshard_report> reshard_ranks(const std::vector<stage_setup>& stages, uint64_t epoch,
                                       const reshard_settings& how);
  /// Every rank's agent (but the lost ones') prepares its stages of `stages` for
  /// `epoch`; the new pipeline's shards (proxies for other ranks'). The first rank that
  /// fails names the error; a rank lost meanwhile is given up on at once.
  result<std::vector<shard_actor>> prepare_ranks(const std::vector<stage_setup>& stages,
                                                 uint64_t epoch, int32_t n_blocks);
  /// With the router paused: each layer's KV rows of blocks `from` go from its running
  /// owner to its owner in `stages` (blocks `to` there); counts bytes into `rep`.
  result<void> move_kv_between_ranks(const std::vector<stage_setup>& stages, uint64_t epoch,
                                     const std::vector<int32_t>& from,
                                     const std::vector<int32_t>& to, reshard_report& rep);

  // -- a rank's side of a reshard (actors/reshard_agent.cpp; on the agent's thread) --
  /// Spawns this rank's agent (shutdown and the reshard's phases).
  agent_actor spawn_agent();
  /// The stages of `stages` on this rank (KV pools of `n_blocks` blocks), made and (in a
  /// job of several ranks) published, held for `epoch`; each stage's port (0: not here or
  /// not published).
  result<std::vector<int32_t>> prepare_here(uint64_t epoch, const std::vector<stage_setup>& stages,
                                            int32_t n_blocks);
  /// The KV rows of `layers` (held here) of blocks `from`, each to its rank in
  /// `to_ranks`, for blocks `to` there: over the data plane, or into the prepared stages
  /// when that rank is this one.
  result<uint64_t> ship_kv_here(uint64_t epoch, const std::vector<int64_t>& layers,
                                const std::vector<int32_t>& to_ranks,
                                const std::vector<int32_t>& from, const std::vector<int32_t>& to);
  /// Waits for the KV rows of `layers` from other ranks and writes them into blocks `to`
  /// of the prepared stages.
  result<uint64_t> take_kv_here(uint64_t epoch, const std::vector<int64_t>& layers,
                                const std::vector<int32_t>& to);
  /// The prepared stages become this rank's; the old ones are released.
  void commit_here(uint64_t epoch);
  /// The prepared stages are released; the running ones stay.
  void abort_here(uint64_t epoch);
  /// Ends `shards` here (and unpublishes them in a job of several ranks).
  void release_shards(const std::vector<shard_actor>& shards);

  // -- surviving a lost rank (actors/local_server_recovery.cpp) --
  /// This rank's pulse: answers the head's heartbeats, leaves when fenced or when the
  /// head is gone.
  pulse_actor spawn_pulse();
  /// The head: watches every rank (its agent going down, its heartbeat) and starts the
  /// thread that replaces lost stages.
  void start_recovery(std::vector<pulse_actor> pulses);
  /// The head: rank `rank` is lost (`why`); any thread. The recovery thread takes it.
  void rank_lost(int32_t rank, std::string why);
  /// The recovery thread's loop: one lost rank after another.
  void recovery_loop();
  /// Replaces the stages of lost rank `rank`: fence it, re-plan without the lost ranks,
  /// the survivors stop their old stages and make the new ones, the router switches
  /// and replays; or, when nothing fits, every request ends with why.
  void recover_from(int32_t rank, const std::string& why);
  /// Why to stop waiting for `rank` (lost, or the head stops); empty: keep waiting.
  std::string gave_up_on(int32_t rank);
  /// A rank's side: its old stages end (each finishes the step it runs) and the lost
  /// ranks' transfers are dropped.
  void quiesce_here(const std::vector<int32_t>& lost);

  /// shards_, read under its lock (a reshard swaps it).
  std::vector<shard_actor> current_shards() const;
  /// The poller's loop: every stage's last 256 step timings, once a second.
  void poll_stage_times() const;

  // -- member variables -------------------------------------------------------
  std::shared_ptr<const model> model_;
  std::shared_ptr<const tokenizer> tok_;
  server_options opts_;
  caf::actor_system_config cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  cluster_link link_;
  std::shared_ptr<transport> data_;
  std::vector<shard_actor> shards_;    ///< every stage's (remote ones on the head only)
  std::vector<shard_actor> local_shards_;
  std::vector<std::shared_ptr<stage_compute>> computes_;  ///< [stage] this rank's; else null
  uint64_t epoch_ = 0;                 ///< the running pipeline's (reshards count it up)
  std::atomic<uint64_t> committed_epoch_{0};  ///< epoch_, for the pulse (no lock)
  /// What a reshard prepared on this rank, until it commits or aborts.
  struct prepared {
    uint64_t epoch = 0;
    std::vector<stage_setup> stages;
    int32_t n_blocks = 0;
    std::vector<std::shared_ptr<stage_compute>> computes;  ///< [stage] this rank's; else null
    std::vector<shard_actor> shards;                       ///< [stage] this rank's; else null
  };
  std::optional<prepared> pending_;
  agent_actor agent_;                  ///< this rank's
  pulse_actor pulse_;                  ///< this rank's
  std::vector<pulse_actor> pulses_;    ///< on the head: every rank's ([rank]; its own local)
  caf::actor watcher_;                 ///< on the head: heartbeats and every rank's agent
  std::thread recovery_;               ///< on the head (several ranks): recover_from
  mutable std::mutex lost_mu_;         ///< lost_queue_, lost_, recovery_stop_
  std::condition_variable lost_cv_;
  std::deque<std::pair<int32_t, std::string>> lost_queue_;
  std::set<int32_t> lost_;             ///< on the head: ranks given up on
  bool recovery_stop_ = false;
  std::vector<agent_actor> agents_;    ///< on the head: every rank's ([rank]; its own local)
  std::vector<std::string> rank_hosts_;  ///< on the head: the address of every rank
  mutable std::mutex shards_mu_;       ///< shards_, local_shards_, computes_, opts_.stages,
                                       ///< pending_ and epoch_ against a reshard
  std::mutex reshard_mu_;              ///< one reshard at a time
  std::mutex shutdown_mu_;
  std::condition_variable shutdown_cv_;
  bool shutdown_ = false;
  bool peer_died_ = false;
  bool job_over_ = false;              ///< the head said the job ends (its pulse heard it)
  router_actor router_;
  admission_actor admission_;
  std::atomic<uint64_t> next_id_{1};
  std::shared_ptr<shared_view> view_ = std::make_shared<shared_view>();
  mutable std::thread poller_;         ///< started by the first snapshot() on the head
};

}  // namespace baton
