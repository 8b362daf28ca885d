// start_job.hpp: open_job and start_job, each step agreed on by every rank.
#include "launch/job/start_job.hpp"


namespace baton::cli {

opened_job open_job(engine_flags& f,
                    const std::function<result<load_request>(const mpi_session&,
                                                             const std::optional<topology>&)>&
                        check) {
  opened_job j;
  auto mpi = mpi_session::init();
  if (!mpi) {
    j.status = fail(mpi.err().message);
    return j;
  }
  j.mpi = std::move(*mpi);
  auto topo = read_topology(*j.mpi, f);
  if (!topo) {
    j.status = fail_agreed(*j.mpi, topo.err().message);
    return j;
  }
  j.topo = std::move(*topo);
  auto want = check(*j.mpi, j.topo);
  if (!want) {
    j.status = fail(want.err().message);
    return j;
  }
  if (j.mpi->rank() != 0) {
    f.quiet = true;
  }
  auto l = load(f, *want);
  if (auto ok = j.mpi->agree(l ? result<void>() : result<void>(l.err())); !ok) {
    j.status = fail_agreed(*j.mpi, ok.err().message);
    return j;
  }
  j.l = std::move(*l);
  return j;
}

result<std::unique_ptr<pipeline_job>> start_job(opened_job& j, const engine_flags& f,
                                                server_options so) {
  auto job = pipeline_job::start(*j.mpi, f, j.l, std::move(so), j.topo);
  if (!job) {
    return job.err();
  }
  if (!(*job)->head()) {
    (*job)->serve_until_shutdown();
    return std::unique_ptr<pipeline_job>();
  }
  return job;
}

}  // namespace baton::cli
