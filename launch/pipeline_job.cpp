// pipeline_job.hpp.
#include "launch/pipeline_job.hpp"

#include "launch/signals.hpp"
#include "topology/layer_range.hpp"

namespace baton::cli {

result<std::vector<stage_setup>> spread_stages(int64_t n_layer, int32_t n_stages, int32_t world) {
  const int32_t n = std::max(n_stages, world);
  auto ranges = split_layers(n_layer, n);
  if (!ranges) {
    return make_error("%d stages over %d ranks: %s", n, world, ranges.err().message.c_str());
  }
  std::vector<stage_setup> out;
  for (int32_t s = 0; s < n; ++s) {
    const auto& r = (*ranges)[static_cast<size_t>(s)];
    out.push_back(stage_setup{static_cast<int32_t>(static_cast<int64_t>(s) * world / n),
                              r.first, r.last, 0});
  }
  return out;
}

result<std::unique_ptr<pipeline_job>> pipeline_job::start(mpi_session& mpi,
                                                           const engine_flags& f,
                                                           const loaded& l, server_options so) {
  std::unique_ptr<pipeline_job> job(new pipeline_job());
  job->mpi_ = &mpi;
  auto stages = spread_stages(l.m->config().n_layer, f.stages, mpi.size());
  if (auto ok = mpi.agree(stages ? result<void>() : result<void>(stages.err())); !ok) {
    return ok.err();
  }
  so.stages = *stages;
  so.n_stages = static_cast<int32_t>(so.stages.size());
  // ranks sharing a host share its cores unless --threads says otherwise
  if (f.threads <= 0 && mpi.size() > 1) {
    int32_t here = 0;
    for (const auto& h : mpi.hosts()) {
      here += h == mpi.hosts()[static_cast<size_t>(mpi.rank())] ? 1 : 0;
    }
    so.n_threads = std::max(1, so.n_threads / here);
  }
  cluster_link link;
  link.rank = mpi.rank();
  link.world = mpi.size();
  link.bind_host = mpi.bind_host();
  if (mpi.size() > 1) {
    std::vector<int32_t> ranks;
    for (const auto& st : so.stages) {
      ranks.push_back(st.rank);
    }
    job->mpi_data_ = std::make_shared<mpi_transport>(ranks);
    link.data = job->mpi_data_;
    link.allgather = [&mpi](const std::string& s) { return mpi.allgather(s); };
    std::weak_ptr<mpi_transport> data = job->mpi_data_;
    link.on_rank_down = [data, &mpi](int32_t rank) {
      if (auto d = data.lock()) {
        d->forget_peer(rank);
      }
      mpi.rank_died(rank);
    };
  }
  auto srv = local_server::create(l.m, l.tok, so, link);
  if (auto ok = mpi.agree(srv ? result<void>() : result<void>(srv.err())); !ok) {
    return ok.err();
  }
  job->srv_ = std::move(*srv);
  return job;
}

pipeline_job::~pipeline_job() {
  if (srv_ && srv_->peer_died()) {
    mpi_->rank_died(-1);
  }
  srv_.reset();  // actors first: they use the transport
  if (mpi_data_) {
    mpi_data_->stop();  // then the progress thread, before MPI_Finalize
    if (mpi_data_->abandoned()) {
      mpi_->rank_died(-1);
    }
  }
  mpi_data_.reset();
}

transport_stats pipeline_job::transfer_stats() const {
  return mpi_data_ ? mpi_data_->stats() : transport_stats{};
}

void pipeline_job::serve_until_shutdown() { srv_->wait_for_shutdown(stop_requested()); }

}  // namespace baton::cli
