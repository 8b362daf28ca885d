// `baton reshard --topology FILE [--url URL] [--admin-key K] [--reshard-kv move|recompute]`:
// sends an edited topology to
// a running `baton serve` (POST /admin/topology), which applies it without dropping a
// request. Prints what the reshard did; a file the server refuses (its file:line error,
// or another reshard under way) exits 2, a server that cannot be reached 1.
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "launch/cli/commands.hpp"
#include "launch/http/http_client.hpp"

namespace baton::cli {

namespace {

struct reshard_options {
  std::string url = "http://127.0.0.1:8000";
  std::string topology;
  std::string admin_key;
  std::string reshard_kv;  ///< "move" or "recompute"; empty: the server's --reshard-kv
  double timeout_s = 600;
};

int run_reshard(const reshard_options& o) {
  auto url = parse_http_url(o.url);
  if (!url) {
    return fail(url.err().message);
  }
  std::ifstream in(o.topology, std::ios::binary);
  if (!in) {
    return fail("--topology " + o.topology + ": cannot read the file");
  }
  std::ostringstream text;
  text << in.rdbuf();
  http_client http(*url, o.admin_key,
                   std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000)));
  nlohmann::json body = {{"topology", text.str()}};
  if (!o.reshard_kv.empty()) {
    body["reshard_kv"] = o.reshard_kv;
  }
  auto r = http.post("/admin/topology", body);
  if (!r) {
    fail(r.err().message);
    return exit_failure;
  }
  if (!r->ok()) {
    fail("reshard refused (HTTP " + std::to_string(r->status) + "): " + r->error_message());
    return r->status >= 400 && r->status < 500 ? exit_bad_input : exit_failure;
  }
  const auto j = nlohmann::json::parse(r->body, nullptr, false);
  if (!j.is_object()) {
    fail("the server's reply is not JSON: " + r->body.substr(0, 200));
    return exit_failure;
  }
  std::printf("reshard: epoch %s; prepared in %s s, paused %s s (steps in flight %s s, KV %s "
              "s), moved %s KV bytes (%s to other ranks); %s KV blocks, %s sequences "
              "preempted\n",
              j.value("epoch", nlohmann::json()).dump().c_str(),
              j.value("prepare_seconds", nlohmann::json()).dump().c_str(),
              j.value("pause_seconds", nlohmann::json()).dump().c_str(),
              j.value("drain_seconds", nlohmann::json()).dump().c_str(),
              j.value("kv_seconds", nlohmann::json()).dump().c_str(),
              j.value("kv_bytes_moved", nlohmann::json()).dump().c_str(),
              j.value("kv_bytes_sent", nlohmann::json()).dump().c_str(),
              j.value("kv_blocks", nlohmann::json()).dump().c_str(),
              j.value("preempted", nlohmann::json()).dump().c_str());
  return exit_ok;
}

}  // namespace

void add_reshard_command(CLI::App& app, int& status) {
  auto o = std::make_shared<reshard_options>();
  auto* cmd = app.add_subcommand(
      "reshard", "Apply an edited topology to a running `baton serve` without dropping a request");
  cmd->add_option("--topology", o->topology, "The new topology file (TOML)")->required();
  cmd->add_option("--url", o->url, "The server (default http://127.0.0.1:8000)");
  cmd->add_option("--admin-key", o->admin_key, "The server's --admin-key, when it has one");
  cmd->add_option("--timeout", o->timeout_s, "Seconds to wait for the reshard (default 600)");
  cmd->add_option("--reshard-kv", o->reshard_kv,
                  "move: the KV cache follows its layers; recompute: running sequences are "
                  "computed again on the new stages (default: the server's --reshard-kv)")
      ->check(CLI::IsMember({"move", "recompute"}));
  cmd->callback([o, &status] { status = run_reshard(*o); });
}

}  // namespace baton::cli
