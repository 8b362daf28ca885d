// The one way `baton run`, `baton serve` and `baton bench batch` start a job: MPI (under
// mpirun), the topology file (--topology, read on every rank and agreed on), the
// command's own checks, the model and its memory plan (agreed; logged by rank 0 only),
// and then the actor pipeline on every rank, where the ranks other than the head serve
// their shards until the head ends the job. Every step that can fail on one rank is
// agreed on by all, and its error is printed once, by rank 0; the commands keep only
// what they do with the head's pipeline.
#pragma once

#include <functional>
#include <memory>
#include <optional>

#include "launch/cli/commands.hpp"
#include "launch/cli/engine_flags.hpp"
#include "launch/job/mpi_session.hpp"
#include "launch/job/pipeline_job.hpp"
#include "topology/topology_file.hpp"

namespace baton::cli {

/// A job that has started (status exit_ok), or the exit status after its error was printed.
struct opened_job {
  int status = exit_ok;
  std::unique_ptr<mpi_session> mpi;
  std::optional<topology> topo;
  loaded l;
};

/// MPI init, --topology (agreed; its model taken when --model is not given), then
/// `check` on every rank (the command's own checks; its error is printed by every rank,
/// as a usage error), then the model (agreed; quiet on ranks other than 0).
opened_job open_job(engine_flags& f,
                    const std::function<result<load_request>(const mpi_session&,
                                                             const std::optional<topology>&)>&
                        check);

/// pipeline_job::start on every rank (agreed). On the head: its job. On the other ranks:
/// serves the shards until the head ends the job, then returns null.
result<std::unique_ptr<pipeline_job>> start_job(opened_job& j, const engine_flags& f,
                                                server_options so);

}  // namespace baton::cli
