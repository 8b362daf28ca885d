// Jobs whose pipeline changes under load (tests/reshard_test, tests/recovery_test,
// tests/multihost_test): topology files with a fixed KV share per layer, and seeded
// streaming completions run all at once with something done to the job meanwhile, to
// prove every stream unchanged.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/serve_util.hpp"

#define REQUIRE_MPI_FIXTURE()                                      \
  if (!have_mpirun()) {                                            \
    GTEST_SKIP() << "mpirun is not installed (openmpi-bin)";       \
  }                                                                \
  ASSERT_TRUE(fx().error.empty()) << fx().error

namespace baton {

/// A topology file of `stages` ("rank:first-last" or "rank:layer" each), with `kib` KiB of
/// KV memory per layer: every placement holds the same KV blocks.
inline std::string topology_file(const std::string& name, const std::vector<std::string>& stages,
                          const std::string& pipeline = "", int kib = 2048) {
  std::string text = pipeline;
  for (const auto& s : stages) {
    const auto colon = s.find(':');
    const std::string layers = s.substr(colon + 1);
    const auto dash = layers.find('-');
    const int n = dash == std::string::npos
                      ? 1
                      : std::stoi(layers.substr(dash + 1)) - std::stoi(layers.substr(0, dash)) + 1;
    text += "[[stage]]\nrank = " + s.substr(0, colon) + "\nlayers = \"" + layers +
            "\"\nkv_cache_memory = \"" + std::to_string(kib * n) + "KiB\"\n";
  }
  const auto path = dir() / name;
  std::ofstream(path) << text;
  return path.string();
}

/// Streamed request i (seeded sampling, no early stop): its text pieces in order, and
/// "ERROR ..." for an error event or a failed request. `keepalives` counts SSE comments.
inline std::string stream(const server_process& s, int i, int* keepalives = nullptr) {
  const std::string body = R"({"prompt":"the river )" + std::to_string(i) +
                           R"( runs under a quiet city","max_tokens":160,"temperature":0.9,)"
                           R"("seed":)" + std::to_string(100 + i) +
                           R"(,"ignore_eos":true,"stream":true})";
  auto r = curl(s, "/v1/completions", body);
  if (r.status != 200) {
    return "ERROR HTTP " + std::to_string(r.status) + ": " + r.body;
  }
  std::string pieces;
  int n_pieces = 0;
  bool done = false;
  std::istringstream lines(r.body);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(": keep-alive", 0) == 0 && keepalives) {
      ++*keepalives;
    }
    if (line.rfind("data: ", 0) != 0) {
      continue;
    }
    if (line == "data: [DONE]") {
      done = true;
      continue;
    }
    const auto j = nlohmann::json::parse(line.substr(6), nullptr, false);
    if (j.is_discarded() || j.contains("error")) {
      return "ERROR " + line;
    }
    const auto& c = j["choices"][0];
    pieces += c.value("text", std::string()) + "\x1f";
    ++n_pieces;
    if (!c["finish_reason"].is_null()) {
      pieces += "finish=" + c["finish_reason"].get<std::string>();
    }
  }
  return done ? pieces : "ERROR no [DONE]: " + r.body.substr(0, 300);
}

/// All `n` at once; their answers. `during` runs once they are under way.
inline std::vector<std::string> stream_all(const server_process& s, int n,
                                    const std::function<void()>& during = {},
                                    int* keepalives = nullptr) {
  std::vector<std::string> out(static_cast<size_t>(n));
  std::vector<int> alive(static_cast<size_t>(n), 0);
  std::vector<std::thread> clients;
  for (int i = 0; i < n; ++i) {
    clients.emplace_back(
        [&, i] { out[static_cast<size_t>(i)] = stream(s, i, &alive[static_cast<size_t>(i)]); });
  }
  if (during) {
    // mid-generation: every request has tokens out, none is finished
    const double before = metric(s, "baton:generation_tokens_total");
    for (int k = 0; k < 400 && metric(s, "baton:generation_tokens_total") < before + n * 20;
         ++k) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    during();
  }
  for (auto& c : clients) {
    c.join();
  }
  if (keepalives) {
    for (int a : alive) {
      *keepalives += a;
    }
  }
  return out;
}

}  // namespace baton
