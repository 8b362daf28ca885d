// Helpers of the tests that run `baton` under mpirun (mpi_test.cpp, multihost_test.cpp):
// a demo model and 16 prompts made once per test process, shell runs with captured
// output, and the request lines of `baton run --json`.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/test_util.hpp"

namespace baton::mpi_test {


namespace fs = std::filesystem;

using test::run_result;
using test::slurp;

inline const fs::path& dir() {
  static const fs::path d = test::temp_dir("mpi");
  return d;
}

inline run_result shell(const std::string& cmd) { return test::run_shell(cmd); }

inline std::string mpirun(int np) {
  return "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 120 mpirun "
         "--oversubscribe --mca btl self,vader,tcp -np " +
         std::to_string(np) + " ";
}

/// The demo model (4 layers) and 16 prompts, made once.
struct fixture {
  std::string model;
  std::string prompts;
  std::string error;  // why the fixture could not be made
};

inline const fixture& fx() {
  static const fixture f = [] {
    fixture x;
    x.model = (dir() / "demo.gguf").string();
    x.prompts = (dir() / "prompts.txt").string();
    auto mk = shell(std::string(BATON_BINARY) + " mkmodel --preset demo --seed 11 -o " + x.model);
    if (mk.status != 0) {
      x.error = "mkmodel failed: " + mk.err;
    }
    std::ofstream p(x.prompts);
    const char* words[] = {"the", "river", "of", "light", "runs", "under", "a", "quiet",
                           "city", "where", "nobody", "sleeps", "and", "every", "door"};
    for (int i = 0; i < 16; ++i) {
      for (int j = 0; j < 3 + (i * 7) % 29; ++j) {
        p << words[(i * 5 + j * 3) % 15] << ' ';
      }
      p << "\n";
    }
    return x;
  }();
  return f;
}

inline bool have_mpirun() { return std::system("command -v mpirun >/dev/null 2>&1") == 0; }

#define REQUIRE_MPI()                                                     \
  if (!have_mpirun()) {                                                   \
    GTEST_SKIP() << "mpirun is not installed (openmpi-bin)";              \
  }                                                                       \
  ASSERT_TRUE(fx().error.empty()) << fx().error

inline std::string write_topology(const std::string& name, const std::string& body) {
  const auto p = dir() / name;
  std::ofstream(p) << "model = \"" << fx().model << "\"\n" << body;
  return p.string();
}

/// The request lines of a --json run (the summary line apart).
inline std::vector<std::string> request_lines(const std::string& out, nlohmann::json* summary = nullptr) {
  std::vector<std::string> lines;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("{\"summary\"", 0) == 0) {
      if (summary) {
        *summary = nlohmann::json::parse(line)["summary"];
      }
    } else if (!line.empty()) {
      lines.push_back(line);
    }
  }
  return lines;
}

inline std::string run_args(const std::string& extra = "", int n = 24,
                     const std::string& sampling = "--temp 0") {
  return std::string(BATON_BINARY) + " run -q --json --prompt-file " + fx().prompts + " -n " +
         std::to_string(n) + " " + sampling + " -m " + fx().model + " " + extra;
}

inline const std::vector<std::string>& single_process() {
  static const std::vector<std::string> ref = [] {
    auto r = shell(run_args());
    EXPECT_EQ(r.status, 0) << r.err;
    return request_lines(r.out);
  }();
  return ref;
}

}  // namespace baton::mpi_test
