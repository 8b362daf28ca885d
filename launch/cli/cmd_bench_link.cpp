// `mpirun -np 2 baton bench link [-o L.json] [--profile P.json]`: a ping-pong between rank
// 0 and rank 1 through the transport the stages use (mpi_transport: its progress thread,
// headers and all), at activation sizes from one token to thousands, then the link's
// latency and bandwidth fitted to one-way time = latency + bytes / bandwidth (least
// squares on the medians). The ranks may be on one host (shared memory), on namespace
// hosts behind a shaped veth, or on real hosts: what `baton plan --simulate` takes as the
// "link" between stages of different ranks.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>
#include <nlohmann/json.hpp>

#include "launch/cli/commands.hpp"
#include "launch/job/mpi_session.hpp"
#include "runtime/sim/profile_file.hpp"
#include "runtime/transport/mpi_transport.hpp"

namespace baton::cli {

namespace {

struct link_options {
  std::string out;
  std::string profile;  ///< a profile to add the link to
  int reps = 20;
  int32_t n_embd = 2048;
};

using clock_type = std::chrono::steady_clock;

int run_bench_link(const link_options& o) {
  auto mpi = mpi_session::init();
  if (!mpi) {
    return fail(mpi.err().message);
  }
  if (!(*mpi)->active() || (*mpi)->size() != 2) {
    return fail("bench link: run it as 2 MPI ranks: mpirun -np 2 baton bench link (ranks "
                "on the two hosts or devices to measure)");
  }
  if (o.reps < 3 || o.n_embd < 1 || o.n_embd > 65536) {
    return fail("bench link: -r must be >= 3 and --n-embd 1 to 65536");
  }
  const int rank = (*mpi)->rank();
  // stage 0 on rank 0, stage 1 on rank 1: a ping to stage 1, its pong back to stage 0
  mpi_transport t({0, 1});
  const std::vector<int32_t> tokens = {1, 4, 16, 64, 256, 1024};
  struct point {
    int32_t tokens;
    double bytes;
    double one_way_s;
  };
  std::vector<point> points;
  uint64_t step = 1;
  const auto timeout = std::chrono::seconds(30);
  for (const int32_t n : tokens) {
    std::vector<double> rtt;
    for (int r = 0; r < o.reps + 2; ++r, ++step) {  // two warm-ups
      activations a;
      a.header.step = step;
      a.header.n_tokens = n;
      a.header.n_embd = o.n_embd;
      a.header.seq_ids = {step};
      a.header.seq_rows = {n};
      a.hidden.assign(static_cast<size_t>(n) * static_cast<size_t>(o.n_embd), 0.5f);
      // a shard waiting for its input tells the transport (it polls fast then): so here
      if (rank == 0) {
        a.header.stage = 1;
        const auto t0 = clock_type::now();
        t.expect(0);
        t.send(std::move(a));
        if (!t.recv(step, 0, timeout)) {
          return fail("bench link: no answer from rank 1 within 30 s");
        }
        if (r >= 2) {
          rtt.push_back(std::chrono::duration<double>(clock_type::now() - t0).count());
        }
      } else {
        t.expect(1);
        if (!t.recv(step, 1, timeout)) {
          return fail("bench link: nothing from rank 0 within 30 s");
        }
        a.header.stage = 0;
        t.send(std::move(a));
      }
    }
    if (rank == 0) {
      std::sort(rtt.begin(), rtt.end());
      points.push_back(point{n, static_cast<double>(n) * o.n_embd * sizeof(float),
                             rtt[rtt.size() / 2] / 2});
    }
  }
  // a last tiny round trip: each side then knows its big messages arrived, and a short
  // wait lets the progress thread see its own last send complete; stop() would abandon a
  // send still pending (and the peer would wait for it in vain)
  {
    activations bye;
    bye.header.step = step;
    bye.header.seq_ids = {step};
    bye.header.seq_rows = {0};
    if (rank == 0) {
      bye.header.stage = 1;
      t.send(std::move(bye));
      if (!t.recv(step, 0, timeout)) {
        return fail("bench link: rank 1 did not say goodbye within 30 s");
      }
    } else {
      if (!t.recv(step, 1, timeout)) {
        return fail("bench link: rank 0 did not say goodbye within 30 s");
      }
      bye.header.stage = 0;
      t.send(std::move(bye));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  t.stop();
  if (rank != 0) {
    return exit_ok;
  }
  // one-way = latency + bytes / bandwidth: least squares on relative error (weights
  // 1 / t^2), so the small messages of decode count as much as the large ones; the
  // points themselves go into the link too, and the simulator interpolates them
  std::vector<double> bytes, times, weights;
  for (const point& p : points) {
    bytes.push_back(p.bytes);
    times.push_back(p.one_way_s);
    weights.push_back(1.0 / (p.one_way_s * p.one_way_s));
  }
  const line_fit f = fit_line(bytes, times, weights);
  const double latency = std::max(0.0, f.intercept);
  const double bandwidth = f.slope > 0 ? 1.0 / f.slope : 1e15;
  nlohmann::json pts = nlohmann::json::array();
  for (const point& p : points) {
    pts.push_back({{"tokens", p.tokens}, {"bytes", p.bytes}, {"one_way_s", p.one_way_s},
                   {"predicted_s", latency + p.bytes / bandwidth}});
  }
  nlohmann::json measured = nlohmann::json::array();
  for (const point& p : points) {
    measured.push_back({p.bytes, p.one_way_s});
  }
  const nlohmann::json link = {
      {"latency_s", latency}, {"bytes_per_s", bandwidth}, {"points", measured}};
  const auto& hosts = (*mpi)->hosts();
  std::fprintf(stderr, "bench link: rank 0 (%s) <-> rank 1 (%s): latency %.1f us, %.3g GB/s\n",
               hosts.size() > 0 ? hosts[0].c_str() : "?", hosts.size() > 1 ? hosts[1].c_str() : "?",
               latency * 1e6, bandwidth / 1e9);
  for (const point& p : points) {
    std::fprintf(stderr, "  %5d tokens (%9.0f bytes): one way %9.1f us\n", p.tokens, p.bytes,
                 p.one_way_s * 1e6);
  }
  if (!o.profile.empty()) {
    std::ifstream in(o.profile);
    auto j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      return fail(o.profile + ": not a JSON object (a profile from baton bench calibrate)");
    }
    j["link"] = link;
    std::ofstream f(o.profile, std::ios::trunc);
    f << j.dump(2) << "\n";
    if (!f) {
      return fail(o.profile + ": cannot write it");
    }
  }
  const nlohmann::json out = {{"link", link}, {"n_embd", o.n_embd}, {"points", pts}};
  if (o.out.empty() || o.out == "-") {
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::ofstream f(o.out, std::ios::trunc);
    f << out.dump(2) << "\n";
    if (!f) {
      return fail(o.out + ": cannot write it");
    }
  }
  return exit_ok;
}

}  // namespace

void add_bench_link_command(CLI::App& bench, int& status) {
  auto o = std::make_shared<link_options>();
  auto* cmd = bench.add_subcommand(
      "link", "Latency and bandwidth between two MPI ranks through the stages' transport "
              "(mpirun -np 2); the simulator's 'link'");
  cmd->add_option("-o,--output", o->out, "The result (JSON; default: stdout)");
  cmd->add_option("--profile", o->profile,
                  "Also write the link into this profile (baton bench calibrate's P.json)");
  cmd->add_option("-r,--repetitions", o->reps, "Round trips per size (median)")
      ->capture_default_str();
  cmd->add_option("--n-embd", o->n_embd, "Floats per token (the model's n_embd)")
      ->capture_default_str();
  cmd->callback([o, &status] { status = run_bench_link(*o); });
}

}  // namespace baton::cli
