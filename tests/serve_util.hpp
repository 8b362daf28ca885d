// `baton serve` as a child process for end-to-end tests: started on an ephemeral port
// (read back from its log line), stopped with SIGTERM; curl for requests, and a reader
// of the Prometheus metrics. Shared by serve_test.cpp and hostile_client_test.cpp.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

#include "tests/mpi_util.hpp"

namespace baton {

using namespace mpi_test;
namespace fs = std::filesystem;

/// A `baton serve` in the background; stopped with SIGTERM at the end.
class server_process {
 public:
  /// `prefix` goes before the binary (env, mpirun); `setup` is shell run before it (ulimit).
  explicit server_process(const std::string& args, const std::string& prefix = "",
                          const std::string& setup = "") {
    static std::atomic<int> counter{0};
    err_ = dir() / ("serve" + std::to_string(counter++) + ".err");
    // no earlier file may stand in for this server's log while the child starts
    std::error_code ec;
    fs::remove(err_, ec);
    const std::string cmd = prefix + std::string(BATON_BINARY) + " serve --port 0 -m " +
                            fx().model + " " + args + " 2>" + err_.string() + " >/dev/null";
    pid_ = fork();
    if (pid_ == 0) {
      setpgid(0, 0);
      execl("/bin/sh", "sh", "-c", (setup + "exec " + cmd).c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    const std::regex re("on http://[0-9.]+:([0-9]+)");
    for (int i = 0; i < 600 && port_ == 0; ++i) {
      std::smatch m;
      const std::string e = slurp(err_);
      if (std::regex_search(e, m, re)) {
        port_ = std::stoi(m[1]);
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
  }
  ~server_process() { stop(); }

  /// SIGTERM; the exit status (-1: it did not exit within 20 s).
  int stop() {
    if (pid_ <= 0) {
      return status_;
    }
    kill(pid_, SIGTERM);
    for (int i = 0; i < 400; ++i) {
      int st = 0;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        pid_ = -1;
        return status_;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    kill(-pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
    return status_;
  }

  int port() const { return port_; }
  std::string url() const { return "http://" + host_ + ":" + std::to_string(port_); }
  /// Where clients reach it (a server in a network namespace: its address there).
  void set_host(std::string host) { host_ = std::move(host); }
  std::string log() const { return slurp(err_); }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::string host_ = "127.0.0.1";
  int status_ = -1;
  fs::path err_;
};

struct http_result {
  int status = 0;
  std::string body;
  std::string headers;
};

inline http_result curl(const server_process& s, const std::string& path, const std::string& data = "",
                 const std::string& extra = "") {
  static std::atomic<int> counter{0};
  std::string name = "h";
  name += std::to_string(counter++);
  const auto hdr = dir() / name;
  std::string cmd = "curl -s -N -D " + hdr.string() + " -o - -w '\\n%{http_code}' " + extra +
                    " " + s.url() + path;
  if (!data.empty()) {
    std::string body_name = "b";
    body_name += std::to_string(counter++);
    const auto body = dir() / body_name;
    std::ofstream(body) << data;
    cmd += " -H 'Content-Type: application/json' --data-binary @" + body.string();
  }
  auto r = shell(cmd);
  http_result out;
  const auto nl = r.out.rfind('\n');
  out.body = r.out.substr(0, nl);
  out.status = std::atoi(r.out.substr(nl + 1).c_str());
  out.headers = slurp(hdr);
  return out;
}

/// The folder holding the npm package openai (scripts/setup.sh installs it), when node is
/// there too.
inline std::optional<fs::path> openai_js() {
  const char* home = std::getenv("HOME");
  fs::path p = std::string(home ? home : "/root") + "/.cache/baton/npm/node_modules/openai";
  if (const char* c = std::getenv("BATON_CACHE")) {
    p = fs::path(c) / "npm/node_modules/openai";
  }
  if (fs::exists(p / "package.json") && std::system("command -v node >/dev/null 2>&1") == 0) {
    return p.parent_path();
  }
  return std::nullopt;
}

inline double metric(const server_process& s, const std::string& name) {
  auto r = curl(s, "/metrics");
  std::istringstream in(r.body);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name + " ", 0) == 0) {
      return std::stod(line.substr(name.size() + 1));
    }
  }
  return -1;
}

}  // namespace baton
