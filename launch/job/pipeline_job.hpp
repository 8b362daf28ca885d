// Starts the actor pipeline for a command on every rank of the job: the stages from a
// topology file (--topology) or from --stages (spread over the MPI ranks in order), the
// transport (MPI between ranks, memory within one), the local_server on each rank.
// Every step that can fail on one rank is agreed on by all ranks, so a bad file or a
// missing model on one host ends the job with that rank's message, never a hang.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>

#include "actors/local_server.hpp"
#include "launch/cli/engine_flags.hpp"
#include "launch/job/mpi_session.hpp"
#include "runtime/transport/mpi_transport.hpp"
#include "topology/planner.hpp"
#include "topology/topology_file.hpp"

namespace baton::cli {

/// With --topology: reads the file on every rank (agreed) and, when --model is not
/// given, takes the model from it. Nothing without --topology.
result<std::optional<topology>> read_topology(mpi_session& mpi, engine_flags& f);

class pipeline_job {
 public:
  /// Collective: every rank calls it with the same arguments. `so` carries the
  /// pipeline's settings; its stages are filled in here. With a topology, the file's
  /// settings replace so's, and so.serving.n_blocks (when > 0) caps the plan's KV blocks.
  static result<std::unique_ptr<pipeline_job>> start(mpi_session& mpi, const engine_flags& f,
                                                     const loaded& l, server_options so,
                                                     const std::optional<topology>& topo = {});
  ~pipeline_job();

  local_server& server() { return *srv_; }
  bool head() const { return srv_->head(); }
  /// Applies an edited topology (TOML `text`, called `name` in errors) to the running
  /// pipeline (local_server::reshard): parsed and planned against this job's model and
  /// devices first; a different model, or a change of KV cache type, block size, context
  /// length or batch limits, or a KV pool smaller than one full-context sequence, is
  /// refused; its micro_batches and KV memory apply (a smaller pool preempts the youngest
  /// sequences). Stages may move to any rank of the job (a standby one
  /// included). The head; any thread. `busy` turns true when another reshard runs.
  /// `recompute_kv`: no KV moves; running sequences are recomputed on the new stages.
  result<reshard_report> reshard(std::string_view text, const std::string& name, bool* busy,
                                 bool recompute_kv = false);
  /// Activation transfer counters (MPI jobs only; zeros otherwise).
  transport_stats transfer_stats() const;
  /// On ranks other than the head: serves the shards until the head ends the job or,
  /// after a signal, 10 s at most (mpirun sends it to every rank at once: this rank
  /// waits for the head's shutdown instead of dying under the head's requests).
  void serve_until_shutdown();

 private:
  pipeline_job() = default;
  /// reshard's file, checked and planned into stages, the micro-batches its [pipeline]
  /// table sets (0: none) and the KV blocks the new placement holds.
  result<std::vector<stage_setup>> reshard_stages(std::string_view text, const std::string& name,
                                                  int32_t* micro_batches, int32_t* n_blocks);
  /// After `lost` ranks were lost: the first of recovery_candidates that the planner
  /// places within every survivor's budget with a KV pool for one full-context sequence
  /// at least (`n_blocks` running now, the cap when the stages size their KV memory);
  /// else every candidate's refusal, with its numbers.
  result<recovery_plan> recovery_stages(const std::vector<stage_setup>& running,
                                        const std::set<int32_t>& lost, int32_t n_blocks);
  /// Keeps the memory settings of a plan's stages, for the recovery's re-plan.
  void remember_specs(const pipeline_plan& plan);

  // -- member variables -------------------------------------------------------
  mpi_session* mpi_ = nullptr;
  std::shared_ptr<mpi_transport> mpi_data_;
  std::unique_ptr<local_server> srv_;
  std::shared_ptr<const model> model_;
  placement_env env_;      ///< every rank's devices as each said at the start
  int32_t threads_flag_ = 0;
  int32_t n_blocks_cap_ = 0;  ///< the KV blocks the command allowed at most (0: no cap)  ///< --threads (0: the plan's)
  int stop_listener_ = 0;  ///< on the head: a signal marks the server as stopping
  /// Each planned stage's spec (memory share), by (rank, first layer, last layer, device).
  std::map<std::tuple<int32_t, int64_t, int64_t, std::string>, stage_spec> specs_;
};

/// The stages a plan places (threads: `threads_flag` when > 0, else the plan's).
std::vector<stage_setup> stages_of(const pipeline_plan& plan, int32_t threads_flag);

/// Stage placement without a topology file: `n_stages` (at least one per rank) spread
/// over `world` ranks in order, layers split evenly.
result<std::vector<stage_setup>> spread_stages(int64_t n_layer, int32_t n_stages, int32_t world);

}  // namespace baton::cli
