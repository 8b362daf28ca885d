// cluster_file.hpp: the description read with the topology file's field helpers (errors
// name file:line and the field), profiles resolved relative to the file's folder.
#include "topology/cluster_file.hpp"

#include <filesystem>
#include <limits>

#include "runtime/sim/device_specs.hpp"
#include "runtime/sim/profile_file.hpp"
#include "runtime/system/device.hpp"
#include "runtime/system/files.hpp"
#include "runtime/system/units.hpp"
#include "topology/toml_fields.hpp"

namespace baton {

using namespace toml_fields;

namespace {

constexpr const char* host_keys =
    "name, count, ranks, gpus, gpu, gpu_memory, cpu, cpu_memory, cpu_threads";
constexpr const char* link_keys =
    "within_host, between_hosts, control_within_host, control_between_hosts";

/// {latency = "10us", bandwidth = "100Gbit/s"}
result<sim_link> read_link(const field_ref& ref, const toml::node& n, const char* field) {
  const auto* t = n.as_table();
  if (!t) {
    return ref.wrong_type(n, field, "a table {latency = \"10us\", bandwidth = \"100Gbit/s\"}");
  }
  if (auto k = check_keys(ref.file, *t, {"latency", "bandwidth"}, "in a link", "latency, bandwidth");
      !k) {
    return k.err();
  }
  sim_link l;
  const auto* lat = t->get("latency");
  const auto* bw = t->get("bandwidth");
  if (!lat || !bw) {
    return ref.fail(n, field, "expected both latency and bandwidth");
  }
  auto ls = get_string(ref, *lat, field);
  if (!ls) {
    return ls.err();
  }
  auto latency = parse_seconds(*ls);
  if (!latency) {
    return ref.fail(*lat, field, latency.err().message);
  }
  auto bs = get_string(ref, *bw, field);
  if (!bs) {
    return bs.err();
  }
  auto rate = parse_rate(*bs);
  if (!rate) {
    return ref.fail(*bw, field, rate.err().message);
  }
  l.latency_s = *latency;
  l.bytes_per_s = *rate;
  return l;
}

/// A profile file relative to the cluster file's folder.
result<device_profile> read_profile_at(const field_ref& ref, const toml::node& n,
                                       const char* field, const std::string& path,
                                       const std::string& folder) {
  std::filesystem::path p(path);
  if (p.is_relative() && !folder.empty()) {
    p = std::filesystem::path(folder) / p;
  }
  auto prof = read_profile(p.string());
  if (!prof) {
    return ref.fail(n, field, prof.err().message);
  }
  return prof->device;
}

result<int64_t> count_field(const field_ref& ref, const toml::table& t, const char* field,
                            int64_t lo, int64_t fallback) {
  const auto* n = t.get(field);
  if (!n) {
    return fallback;
  }
  return get_int(ref, *n, field, lo, 65536, std::to_string(lo) + " to 65536");
}

result<void> read_host(const std::string& file, const std::string& folder, const toml::node& node,
                       size_t index, cluster& c) {
  const field_ref ref{file, "host " + std::to_string(index)};
  const auto* t = node.as_table();
  if (!t) {
    return field_ref{file, ""}.wrong_type(node, "host", "an array of tables ([[host]])");
  }
  const std::string where = "in [[host]] " + std::to_string(index);
  if (auto k = check_keys(file, *t,
                          {"name", "count", "ranks", "gpus", "gpu", "gpu_memory", "cpu",
                           "cpu_memory", "cpu_threads"},
                          where.c_str(), host_keys);
      !k) {
    return k.err();
  }
  cluster_host h;
  std::string name = "host" + std::to_string(index);
  if (const auto* n = t->get("name")) {
    auto v = get_string(ref, *n, "name");
    if (!v) {
      return v.err();
    }
    name = *v;
  }
  auto count = count_field(ref, *t, "count", 1, 1);
  auto gpus = count ? count_field(ref, *t, "gpus", 0, 0) : count;
  auto ranks = gpus ? count_field(ref, *t, "ranks", 1, std::max<int64_t>(1, *gpus)) : gpus;
  auto threads = ranks ? count_field(ref, *t, "cpu_threads", 1, 2) : ranks;
  if (!threads) {
    return threads.err();
  }
  h.gpus = static_cast<int32_t>(*gpus);
  h.ranks = static_cast<int32_t>(*ranks);
  h.cpu_threads = static_cast<int32_t>(*threads);
  if (const auto* n = t->get("gpu")) {
    auto v = get_string(ref, *n, "gpu");
    if (!v) {
      return v.err();
    }
    if (auto sheet = find_spec_sheet(*v)) {
      h.gpu = sheet->profile;
      h.gpu_memory = sheet->memory_bytes;
      h.gpu_basis = sheet->basis;
    } else if (v->find(".json") != std::string::npos) {
      auto p = read_profile_at(ref, *n, "gpu", *v, folder);
      if (!p) {
        return p.err();
      }
      h.gpu = *p;
      h.gpu_basis = "profile " + *v;
    } else {
      return ref.fail(*n, "gpu", "'" + *v + "': expected a spec sheet (" + spec_sheet_names() +
                                     ") or a profile file (P.json from baton bench calibrate)");
    }
  } else if (h.gpus > 0) {
    return ref.fail(node, "gpu", "missing: a host with gpus needs their kind (" +
                                     spec_sheet_names() + ") or a profile file");
  }
  if (const auto* n = t->get("gpu_memory")) {
    auto v = get_string(ref, *n, "gpu_memory");
    auto bytes = v ? parse_bytes(*v) : result<uint64_t>(v.err());
    if (!bytes) {
      return ref.fail(*n, "gpu_memory", bytes.err().message);
    }
    h.gpu_memory = *bytes;
  } else if (h.gpus > 0 && h.gpu_memory == 0) {
    return ref.fail(node, "gpu_memory", "missing: a profile file does not say the memory");
  }
  if (const auto* n = t->get("cpu")) {
    auto v = get_string(ref, *n, "cpu");
    if (!v) {
      return v.err();
    }
    auto p = read_profile_at(ref, *n, "cpu", *v, folder);
    if (!p) {
      return p.err();
    }
    h.cpu = *p;
    h.has_cpu_profile = true;
  }
  if (const auto* n = t->get("cpu_memory")) {
    auto v = get_string(ref, *n, "cpu_memory");
    auto bytes = v ? parse_bytes(*v) : result<uint64_t>(v.err());
    if (!bytes) {
      return ref.fail(*n, "cpu_memory", bytes.err().message);
    }
    h.cpu_memory = *bytes;
  }
  for (int64_t i = 0; i < *count; ++i) {
    cluster_host copy = h;
    copy.name = *count == 1 ? name : name + "-" + std::to_string(i);
    copy.first_rank = c.world_size();
    if (int64_t{copy.first_rank} + copy.ranks > topology_limits::max_world_size) {
      return ref.fail(node, "ranks", "the cluster has more than " +
                                         std::to_string(topology_limits::max_world_size) +
                                         " ranks");
    }
    c.hosts.push_back(std::move(copy));
  }
  return {};
}

}  // namespace

int32_t cluster::world_size() const {
  return hosts.empty() ? 0 : hosts.back().first_rank + hosts.back().ranks;
}

const cluster_host& cluster::host_of(int32_t rank) const {
  for (const cluster_host& h : hosts) {
    if (rank < h.first_rank + h.ranks) {
      return h;
    }
  }
  BATON_ASSERT(false && "rank beyond the cluster");
  return hosts.back();
}

device_profile cluster::profile_of(int32_t rank, const std::string& device,
                                   const device_profile& fallback) const {
  const cluster_host& h = host_of(rank);
  if (cuda_device_index(device)) {
    return h.gpu;
  }
  return h.has_cpu_profile ? h.cpu : fallback;
}

sim_link cluster::link(int32_t a, int32_t b) const {
  if (a == b) {
    return sim_link{0, 1e15};
  }
  return host_of(a).first_rank == host_of(b).first_rank ? within_host : between_hosts;
}

sim_link cluster::control(int32_t rank) const {
  if (rank == 0) {
    return sim_link{0, 1e15};
  }
  return host_of(rank).first_rank == host_of(0).first_rank ? control_within_host
                                                           : control_between_hosts;
}

result<cluster> parse_cluster_text(std::string_view text, const std::string& name,
                                   const std::string& folder) {
  auto doc = parse_document(text, name);
  if (!doc) {
    return doc.err();
  }
  if (auto k = check_keys(name, *doc, {"host", "links"}, "at the top level", "host, links"); !k) {
    return k.err();
  }
  cluster c;
  c.path = name;
  const auto* hosts = doc->get("host");
  const auto* arr = hosts ? hosts->as_array() : nullptr;
  if (!arr || arr->empty()) {
    return make_error("%s: no hosts (expected at least one [[host]] table with ranks, gpus "
                      "and gpu)",
                      name.c_str());
  }
  for (size_t i = 0; i < arr->size(); ++i) {
    if (auto ok = read_host(name, folder, *arr->get(i), i, c); !ok) {
      return ok.err();
    }
  }
  if (const auto* n = doc->get("links")) {
    const field_ref ref{name, "[links]"};
    const auto* t = n->as_table();
    if (!t) {
      return field_ref{name, ""}.wrong_type(*n, "links", "a table ([links])");
    }
    if (auto k = check_keys(name, *t,
                            {"within_host", "between_hosts", "control_within_host",
                             "control_between_hosts"},
                            "in [links]", link_keys);
        !k) {
      return k.err();
    }
    for (auto [key, out] : {std::pair{"within_host", &c.within_host},
                            std::pair{"between_hosts", &c.between_hosts},
                            std::pair{"control_within_host", &c.control_within_host},
                            std::pair{"control_between_hosts", &c.control_between_hosts}}) {
      if (const auto* l = t->get(key)) {
        auto v = read_link(ref, *l, key);
        if (!v) {
          return v.err();
        }
        *out = *v;
      }
    }
  }
  return c;
}

result<cluster> parse_cluster_file(const std::string& path) {
  auto text = read_regular_file(path, topology_limits::max_file_bytes, "cluster file");
  if (!text) {
    return text.err();
  }
  return parse_cluster_text(*text, path, std::filesystem::path(path).parent_path().string());
}

placement_env cluster_placement_env(const cluster& c) {
  placement_env env;
  env.world_size = c.world_size();
  for (int32_t r = 0; r < env.world_size; ++r) {
    env.rank_hosts.push_back(c.host_of(r).name);
  }
  env.query_device = [c](int32_t rank, const std::string& device) {
    device_info d;
    if (rank < 0 || rank >= c.world_size()) {
      d.source = "rank " + std::to_string(rank) + " is not in " + c.path;
      return d;
    }
    const cluster_host& h = c.host_of(rank);
    if (auto idx = cuda_device_index(device)) {
      if (*idx >= h.gpus) {
        d.source = c.path + ": host '" + h.name + "' has " + std::to_string(h.gpus) + " GPUs";
        return d;
      }
      d.exists = true;
      d.memory_bytes = h.gpu_memory;
      d.bandwidth = h.gpu.weight_bytes_per_s;
      d.source = c.path + " host '" + h.name + "' (" + h.gpu.name + ")";
      return d;
    }
    d.exists = true;
    d.memory_bytes = h.cpu_memory;
    d.threads = std::max(1, h.cpu_threads / std::max(1, h.ranks));
    d.bandwidth = h.has_cpu_profile ? h.cpu.weight_bytes_per_s : 0;
    d.source = c.path + " host '" + h.name + "' (cpu)";
    return d;
  };
  return env;
}

}  // namespace baton
