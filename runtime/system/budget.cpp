// Resource budget detection: cgroup discovery from /proc/self/{cgroup,mountinfo}, the
// memory and CPU limits along the cgroup's ancestors, physical RAM, the core count,
// and vLLM's split of the device memory into weights, buffers and KV.
#include "runtime/system/budget.hpp"

#include <string_view>

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <thread>

namespace baton {
namespace {

/// v1 reports "no limit" as LONG_MAX rounded down to a page; no machine has 4 EiB.
constexpr uint64_t v1_unlimited_threshold = uint64_t{1} << 62;

/// The whole file, or nothing when it cannot be opened.
std::optional<std::string> read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return std::nullopt;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string trim(std::string_view s) {
  size_t b = 0;
  size_t e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) {
    ++b;
  }
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) {
    --e;
  }
  return std::string(s.substr(b, e - b));
}

/// A quoted excerpt of a bad value for messages, cut so a binary file cannot flood a log.
std::string quoted(std::string_view s) {
  std::string t = trim(s);
  if (t.size() > 40) {
    t = t.substr(0, 40) + "...";
  }
  for (char& c : t) {
    if (!std::isprint(static_cast<unsigned char>(c))) {
      c = '?';
    }
  }
  return "\"" + t + "\"";
}

template <class T>
std::optional<T> parse_int(std::string_view s) {
  T v{};
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || s.empty()) {
    return std::nullopt;
  }
  return v;
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t pos = s.find(sep, start);
    out.emplace_back(s.substr(start, pos == std::string_view::npos ? s.npos : pos - start));
    if (pos == std::string_view::npos) {
      return out;
    }
    start = pos + 1;
  }
}

/// Words separated by runs of spaces.
std::vector<std::string> words(std::string_view s) {
  std::vector<std::string> out;
  std::istringstream ss{std::string(s)};
  std::string w;
  while (ss >> w) {
    out.push_back(w);
  }
  return out;
}

bool contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape_octal(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    auto octal = [&](size_t k) { return k < s.size() && s[k] >= '0' && s[k] <= '7'; };
    if (s[i] == '\\' && octal(i + 1) && octal(i + 2) && octal(i + 3)) {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string join_path(const std::string& a, const std::string& b) {
  if (b.empty()) {
    return a;
  }
  if (a.empty() || a.back() != '/') {
    return a + "/" + b;
  }
  return a + b;
}

/// "/a/b/" -> "/a/b"; "/" stays.
std::string strip_trailing_slash(std::string s) {
  while (s.size() > 1 && s.back() == '/') {
    s.pop_back();
  }
  return s;
}

struct cgroup_line {
  std::string id;
  std::vector<std::string> controllers;
  std::string path;
};

struct mount_entry {
  std::string root;         // field 4: the root of the mount within the hierarchy
  std::string mount_point;  // field 5
  std::string fstype;       // cgroup or cgroup2
  std::vector<std::string> super_options;
};

std::vector<cgroup_line> parse_proc_cgroup(const std::string& text, const std::string& file,
                                           std::vector<std::string>& notes) {
  std::vector<cgroup_line> out;
  for (const auto& raw : split(text, '\n')) {
    std::string line = trim(raw);
    if (line.empty()) {
      continue;
    }
    // "hierarchy-id:controller-list:path"; the path itself may hold ':'.
    size_t c1 = line.find(':');
    size_t c2 = c1 == std::string::npos ? c1 : line.find(':', c1 + 1);
    if (c2 == std::string::npos || line[c2 + 1] != '/') {
      notes.push_back("ignored line " + quoted(line) + " of " + file +
                      " (expected hierarchy-id:controllers:/path)");
      continue;
    }
    cgroup_line l;
    l.id = line.substr(0, c1);
    std::string ctl = line.substr(c1 + 1, c2 - c1 - 1);
    if (!ctl.empty()) {
      l.controllers = split(ctl, ',');
    }
    l.path = line.substr(c2 + 1);
    out.push_back(std::move(l));
  }
  return out;
}

std::vector<mount_entry> parse_mountinfo(const std::string& text) {
  std::vector<mount_entry> out;
  for (const auto& line : split(text, '\n')) {
    auto w = words(line);
    auto dash = std::find(w.begin(), w.end(), "-");
    // id parent major:minor root mount-point options [optional...] - fstype source super
    if (dash == w.end() || dash - w.begin() < 6 || w.end() - dash < 4) {
      continue;
    }
    const std::string& fstype = *(dash + 1);
    if (fstype != "cgroup" && fstype != "cgroup2") {
      continue;
    }
    mount_entry m;
    m.root = unescape_octal(w[3]);
    m.mount_point = unescape_octal(w[4]);
    m.fstype = fstype;
    m.super_options = split(*(dash + 3), ',');
    out.push_back(std::move(m));
  }
  return out;
}

/// True when `path` is `root` or lies below it.
bool path_under(const std::string& path, const std::string& root) {
  if (root == "/") {
    return !path.empty() && path[0] == '/';
  }
  return path.compare(0, root.size(), root) == 0 &&
         (path.size() == root.size() || path[root.size()] == '/');
}

/// Mount point + (path relative to the mount's root), or the mount point alone when the
/// path lies outside it (a cgroup namespace the process has left).
cgroup_dir make_dir(int version, const cgroup_line& l, const std::vector<const mount_entry*>& ms,
                    const std::string& fs_root, const std::string& what,
                    std::vector<std::string>& notes) {
  const mount_entry* m = ms.front();
  for (const mount_entry* c : ms) {
    if (path_under(l.path, strip_trailing_slash(c->root))) {
      m = c;
      break;
    }
  }
  std::string root = strip_trailing_slash(m->root);
  std::string rel;
  if (path_under(l.path, root)) {
    rel = l.path.substr(root == "/" ? 1 : root.size());
    while (!rel.empty() && rel[0] == '/') {
      rel.erase(0, 1);
    }
  } else {
    notes.push_back(what + " cgroup path " + l.path + " lies outside its mount's root " + m->root +
                    "; using the mount point");
  }
  cgroup_dir d;
  d.version = version;
  d.mount = strip_trailing_slash(fs_root + m->mount_point);
  d.dir = strip_trailing_slash(join_path(d.mount, rel));
  return d;
}

/// The cgroup governing `controller`: its v1 hierarchy when one lists it, else the v2 one.
std::optional<cgroup_dir> find_controller(const std::string& controller,
                                          const std::vector<cgroup_line>& lines,
                                          const std::vector<mount_entry>& mounts,
                                          const std::string& fs_root,
                                          std::vector<std::string>& notes) {
  for (const auto& l : lines) {
    if (!contains(l.controllers, controller)) {
      continue;
    }
    std::vector<const mount_entry*> ms;
    for (const auto& m : mounts) {
      if (m.fstype == "cgroup" && contains(m.super_options, controller)) {
        ms.push_back(&m);
      }
    }
    if (ms.empty()) {
      notes.push_back("cgroup v1 " + controller + " hierarchy " + l.id +
                      " is not mounted (no cgroup mount with option " + controller + ")");
      break;
    }
    return make_dir(1, l, ms, fs_root, controller, notes);
  }
  for (const auto& l : lines) {
    if (l.id != "0" || !l.controllers.empty()) {
      continue;
    }
    std::vector<const mount_entry*> ms;
    for (const auto& m : mounts) {
      if (m.fstype == "cgroup2") {
        ms.push_back(&m);
      }
    }
    if (!ms.empty()) {
      return make_dir(2, l, ms, fs_root, controller, notes);
    }
  }
  return std::nullopt;
}

/// The cgroup folder and its ancestors up to the mount point, own folder first.
std::vector<std::string> ancestors(const cgroup_dir& d) {
  std::vector<std::string> out;
  std::string cur = d.dir;
  if (!path_under(cur, d.mount)) {
    return {cur};
  }
  while (cur.size() > d.mount.size()) {
    out.push_back(cur);
    size_t slash = cur.find_last_of('/');
    if (slash == std::string::npos || slash == 0) {
      break;
    }
    cur = cur.substr(0, slash);
  }
  out.push_back(d.mount);
  return out;
}

/// One limit along the ancestor walk; `value` is bytes or CPUs.
template <class V>
struct found_limit {
  V value;
  std::string source;
  std::string dir;
};

std::optional<found_limit<uint64_t>> read_memory_limit(const cgroup_dir& d,
                                                       std::vector<std::string>& notes) {
  const char* name = d.version == 1 ? "memory.limit_in_bytes" : "memory.max";
  std::optional<found_limit<uint64_t>> best;
  for (const auto& dir : ancestors(d)) {
    std::string file = dir + "/" + name;
    auto text = read_text(file);
    if (!text) {
      continue;
    }
    std::string t = trim(*text);
    if (d.version == 2 && t == "max") {
      continue;
    }
    auto v = parse_int<uint64_t>(t);
    if (!v) {
      notes.push_back("ignored " + file + ": expected a byte count" +
                      (d.version == 2 ? std::string(" or \"max\"") : std::string()) + ", got " +
                      quoted(t));
      continue;
    }
    if (d.version == 1 && *v >= v1_unlimited_threshold) {
      continue;
    }
    if (!best || *v < best->value) {
      std::string source = "cgroup v" + std::to_string(d.version) + " " + name + " in " + dir;
      best = found_limit<uint64_t>{*v, std::move(source), dir};
    }
  }
  return best;
}

std::optional<uint64_t> read_memory_usage(int version, const std::string& dir) {
  auto text = read_text(dir + (version == 1 ? "/memory.usage_in_bytes" : "/memory.current"));
  if (!text) {
    return std::nullopt;
  }
  return parse_int<uint64_t>(trim(*text));
}

std::optional<found_limit<double>> read_cpu_quota(const cgroup_dir& d,
                                                  std::vector<std::string>& notes) {
  std::optional<found_limit<double>> best;
  auto offer = [&](double cpus, std::string source, const std::string& dir) {
    if (!best || cpus < best->value) {
      best = found_limit<double>{cpus, std::move(source), dir};
    }
  };
  for (const auto& dir : ancestors(d)) {
    if (d.version == 1) {
      std::string qfile = dir + "/cpu.cfs_quota_us";
      std::string pfile = dir + "/cpu.cfs_period_us";
      auto qtext = read_text(qfile);
      if (!qtext) {
        continue;
      }
      std::string qt = trim(*qtext);
      auto quota = parse_int<int64_t>(qt);
      if (!quota || (*quota < 0 && *quota != -1) || *quota == 0) {
        notes.push_back("ignored " + qfile + ": expected microseconds or -1, got " + quoted(qt));
        continue;
      }
      if (*quota == -1) {
        continue;
      }
      auto ptext = read_text(pfile);
      std::string pt = ptext ? trim(*ptext) : std::string();
      auto period = parse_int<uint64_t>(pt);
      if (!period || *period == 0) {
        notes.push_back("ignored " + qfile + ": " + pfile +
                        " should be positive microseconds, got " +
                        (ptext ? quoted(pt) : std::string("no file")));
        continue;
      }
      offer(static_cast<double>(*quota) / static_cast<double>(*period),
            "cgroup v1 cpu.cfs_quota_us " + qt + " / cpu.cfs_period_us " + pt + " in " + dir, dir);
    } else {
      std::string file = dir + "/cpu.max";
      auto text = read_text(file);
      if (!text) {
        continue;
      }
      std::string t = trim(*text);
      auto w = words(t);
      // "$MAX $PERIOD"; MAX is "max" for no limit.
      if (!w.empty() && w[0] == "max" && w.size() <= 2) {
        continue;
      }
      auto quota = w.size() == 2 ? parse_int<uint64_t>(w[0]) : std::nullopt;
      auto period = w.size() == 2 ? parse_int<uint64_t>(w[1]) : std::nullopt;
      if (!quota || !period || *quota == 0 || *period == 0) {
        notes.push_back("ignored " + file + ": expected \"max PERIOD\" or \"QUOTA PERIOD\", got " +
                        quoted(t));
        continue;
      }
      offer(static_cast<double>(*quota) / static_cast<double>(*period),
            "cgroup v2 cpu.max " + w[0] + " " + w[1] + " in " + dir, dir);
    }
  }
  return best;
}

/// Cores this process may run on, and how that was found.
std::pair<int, std::string> online_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) {
      return {n, "sched_getaffinity"};
    }
  }
  unsigned hc = std::thread::hardware_concurrency();
  if (hc > 0) {
    return {static_cast<int>(hc), "hardware_concurrency"};
  }
  return {1, "no core count available"};
}

struct meminfo {
  std::optional<uint64_t> total;
  std::optional<uint64_t> available;
};

std::optional<uint64_t> meminfo_field(const std::string& text, const std::string& key) {
  for (const auto& line : split(text, '\n')) {
    if (line.compare(0, key.size() + 1, key + ":") != 0) {
      continue;
    }
    auto w = words(std::string_view(line).substr(key.size() + 1));
    if (w.size() == 2 && w[1] == "kB") {
      if (auto kb = parse_int<uint64_t>(w[0]); kb && *kb <= UINT64_MAX / 1024) {
        return *kb * 1024;
      }
    }
    return std::nullopt;
  }
  return std::nullopt;
}

std::string join_notes(const std::vector<std::string>& notes) {
  std::string out;
  for (const auto& n : notes) {
    out += "; " + n;
  }
  return out;
}

std::string format_cpus(double cpus) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f", cpus);
  return buf;
}

uint64_t saturating_add(uint64_t a, uint64_t b) {
  return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

}  // namespace

result<cgroup_paths> find_cgroups(const std::string& proc_self_dir, const std::string& fs_root) {
  std::string cgroup_file = proc_self_dir + "/cgroup";
  std::string mountinfo_file = proc_self_dir + "/mountinfo";
  auto cg_text = read_text(cgroup_file);
  if (!cg_text) {
    return make_error("cannot read %s: %s", cgroup_file.c_str(), std::strerror(errno));
  }
  auto mi_text = read_text(mountinfo_file);
  if (!mi_text) {
    return make_error("cannot read %s: %s", mountinfo_file.c_str(), std::strerror(errno));
  }
  cgroup_paths out;
  auto lines = parse_proc_cgroup(*cg_text, cgroup_file, out.notes);
  auto mounts = parse_mountinfo(*mi_text);
  std::string root = fs_root == "/" ? std::string() : strip_trailing_slash(fs_root);
  out.memory = find_controller("memory", lines, mounts, root, out.notes);
  out.cpu = find_controller("cpu", lines, mounts, root, out.notes);
  return out;
}

resource_budget detect_budget(const budget_probe& where) {
  resource_budget b;
  std::string root = where.root == "/" ? std::string() : strip_trailing_slash(where.root);
  std::vector<std::string> mem_notes;
  std::vector<std::string> cpu_notes;

  // Physical RAM: MemTotal, else sysconf (the same number on Linux, via sysinfo).
  std::string meminfo_file = root + "/proc/meminfo";
  meminfo mi;
  if (auto text = read_text(meminfo_file)) {
    mi.total = meminfo_field(*text, "MemTotal");
    mi.available = meminfo_field(*text, "MemAvailable");
    if (!mi.total) {
      mem_notes.push_back("ignored " + meminfo_file + ": no MemTotal line in kB");
    }
  }
  std::string ram_source = "physical RAM";
  if (mi.total && *mi.total > 0) {
    b.physical_bytes = *mi.total;
  } else {
    long pages = sysconf(_SC_PHYS_PAGES);
    long page_size = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page_size > 0) {
      b.physical_bytes = static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size);
      ram_source = "physical RAM (sysconf)";
    } else {
      b.physical_bytes = uint64_t{1} << 30;
      ram_source = "a guessed 1 GiB (neither /proc/meminfo nor sysconf gave physical RAM)";
    }
  }

  auto cg = find_cgroups(root + "/proc/self", root);
  std::optional<cgroup_dir> mem_cg;
  std::optional<cgroup_dir> cpu_cg;
  if (!cg) {
    mem_notes.push_back("no cgroup information (" + cg.err().message + ")");
    cpu_notes.push_back("no cgroup information (" + cg.err().message + ")");
  } else {
    mem_cg = cg->memory;
    cpu_cg = cg->cpu;
    mem_notes.insert(mem_notes.end(), cg->notes.begin(), cg->notes.end());
    cpu_notes.insert(cpu_notes.end(), cg->notes.begin(), cg->notes.end());
  }

  // Memory: the smallest cgroup limit, unless physical RAM is smaller still.
  std::optional<found_limit<uint64_t>> mem_limit;
  if (mem_cg) {
    mem_limit = read_memory_limit(*mem_cg, mem_notes);
  }
  if (mem_limit && mem_limit->value < b.physical_bytes) {
    b.memory_bytes = mem_limit->value;
    b.memory_source = mem_limit->source;
    b.memory_used_bytes = read_memory_usage(mem_cg->version, mem_limit->dir);
  } else {
    b.memory_bytes = b.physical_bytes;
    b.memory_source = ram_source;
    if (mem_limit) {
      b.memory_source += "; " + mem_limit->source + " (" + format_bytes(mem_limit->value) +
                         ") is larger";
    }
    if (mi.total && mi.available && *mi.available <= *mi.total) {
      b.memory_used_bytes = *mi.total - *mi.available;
    }
  }
  b.memory_source += join_notes(mem_notes);

  // Threads: ceil(quota) within [1, cores], else the cores.
  auto [n_cores, cores_how] = online_cores();
  if (where.n_cores && *where.n_cores > 0) {
    n_cores = *where.n_cores;
    cores_how = "budget_probe.n_cores";
  }
  b.n_cores = n_cores;
  std::string cores_source = std::to_string(n_cores) + " cores from " + cores_how;
  std::optional<found_limit<double>> quota;
  if (cpu_cg) {
    quota = read_cpu_quota(*cpu_cg, cpu_notes);
  }
  if (quota) {
    b.cpu_quota = quota->value;
    double up = std::ceil(quota->value - 1e-9);
    if (up < static_cast<double>(n_cores)) {
      b.threads = std::max(1, static_cast<int>(up));
      b.threads_source = quota->source;
    } else {
      b.threads = n_cores;
      b.threads_source = cores_source + "; " + quota->source + " (" +
                         format_cpus(quota->value) + " CPUs) is larger";
    }
  } else {
    b.threads = n_cores;
    b.threads_source = cores_source;
  }
  b.threads_source += join_notes(cpu_notes);
  return b;
}

std::string describe(const resource_budget& b) {
  return "budget: memory " + format_bytes(b.memory_bytes) + " (" + b.memory_source +
         "), threads " + std::to_string(b.threads) + " (" + b.threads_source + ")";
}

std::string format_bytes(uint64_t n) {
  char buf[48];
  constexpr double kib = 1024.0;
  auto x = static_cast<double>(n);
  if (x >= kib * kib * kib) {
    std::snprintf(buf, sizeof(buf), "%.2f GiB", x / (kib * kib * kib));
  } else if (x >= kib * kib) {
    std::snprintf(buf, sizeof(buf), "%.2f MiB", x / (kib * kib));
  } else if (x >= kib) {
    std::snprintf(buf, sizeof(buf), "%.2f KiB", x / kib);
  } else {
    std::snprintf(buf, sizeof(buf), "%llu B", static_cast<unsigned long long>(n));
  }
  return buf;
}

result<uint64_t> kv_budget_bytes(uint64_t device_memory, double memory_utilization,
                                 uint64_t weight_bytes, uint64_t buffer_bytes,
                                 std::optional<uint64_t> kv_cache_memory, uint64_t min_kv_bytes) {
  if (!(memory_utilization > 0.0 && memory_utilization <= 1.0)) {
    return make_error("memory_utilization (%g) must be in (0, 1]", memory_utilization);
  }
  if (kv_cache_memory) {
    if (*kv_cache_memory > device_memory) {
      return make_error("kv_cache_memory (%s, %llu bytes) is more than the device's memory "
                        "(%s, %llu bytes)",
                        format_bytes(*kv_cache_memory).c_str(),
                        static_cast<unsigned long long>(*kv_cache_memory),
                        format_bytes(device_memory).c_str(),
                        static_cast<unsigned long long>(device_memory));
    }
    if (*kv_cache_memory < min_kv_bytes) {
      return make_error("kv_cache_memory (%s) cannot hold one sequence of KV (%s)",
                        format_bytes(*kv_cache_memory).c_str(), format_bytes(min_kv_bytes).c_str());
    }
    return *kv_cache_memory;
  }
  long double share = static_cast<long double>(device_memory) * memory_utilization;
  uint64_t budget = share >= static_cast<long double>(UINT64_MAX)
                        ? UINT64_MAX
                        : static_cast<uint64_t>(std::floor(share));
  uint64_t fixed = saturating_add(weight_bytes, buffer_bytes);
  uint64_t need = saturating_add(fixed, min_kv_bytes);
  if (budget < need) {
    return make_error(
        "memory_utilization %.2f of %s = %s cannot hold the weights (%s) + buffers (%s) + one "
        "sequence of KV (%s)",
        memory_utilization, format_bytes(device_memory).c_str(), format_bytes(budget).c_str(),
        format_bytes(weight_bytes).c_str(), format_bytes(buffer_bytes).c_str(),
        format_bytes(min_kv_bytes).c_str());
  }
  return budget - fixed;
}

result<uint64_t> parse_bytes(std::string_view text) {
  // Strictly "<digits>[.<digits>] [unit]": no sign, exponent, hex, inf or nan, so "1e3GiB"
  // is an error rather than a terabyte, and integers are exact to the last byte (a double
  // would round 2^53 + 1).
  constexpr const char* expected =
      "expected a size > 0 (bytes, or a number with K, M, G, T, KiB, MiB, GiB, TiB)";
  size_t i = 0;
  auto skip_spaces = [&] {
    while (i < text.size() && text[i] == ' ') {
      ++i;
    }
  };
  auto is_digit = [&](size_t k) { return k < text.size() && text[k] >= '0' && text[k] <= '9'; };
  skip_spaces();
  const size_t int_begin = i;
  while (is_digit(i)) {
    ++i;
  }
  const std::string_view int_digits = text.substr(int_begin, i - int_begin);
  std::string_view frac_digits;
  if (i < text.size() && text[i] == '.') {
    const size_t frac_begin = ++i;
    while (is_digit(i)) {
      ++i;
    }
    frac_digits = text.substr(frac_begin, i - frac_begin);
  }
  if (int_digits.empty() && frac_digits.empty()) {
    return make_error("%s", expected);
  }
  skip_spaces();
  std::string unit(text.substr(i));
  while (!unit.empty() && unit.back() == ' ') {
    unit.pop_back();
  }
  for (auto& ch : unit) {
    ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  }
  int shift = 0;  // the unit is 2^shift bytes
  if (unit.empty() || unit == "B") {
    shift = 0;
  } else if (unit == "K" || unit == "KB" || unit == "KIB") {
    shift = 10;
  } else if (unit == "M" || unit == "MB" || unit == "MIB") {
    shift = 20;
  } else if (unit == "G" || unit == "GB" || unit == "GIB") {
    shift = 30;
  } else if (unit == "T" || unit == "TB" || unit == "TIB") {
    shift = 40;
  } else {
    return make_error("unknown unit '%s' (expected K, M, G, T, KiB, MiB, GiB, TiB)", unit.c_str());
  }
  const std::string shown(text);
  const auto too_large = [&] {
    return make_error("'%s' is more than 2^64 - 1 bytes", shown.c_str());
  };
  uint64_t whole = 0;
  for (char ch : int_digits) {
    if (__builtin_mul_overflow(whole, uint64_t{10}, &whole) ||
        __builtin_add_overflow(whole, static_cast<uint64_t>(ch - '0'), &whole)) {
      return too_large();
    }
  }
  if (whole > (std::numeric_limits<uint64_t>::max() >> shift)) {
    return too_large();
  }
  // the fraction of the unit in whole bytes, floor(num / den x 2^shift), by long division
  // one bit at a time (exact: num < den <= 10^18, so 2 x the remainder fits); digits past
  // the 18th move the product by less than 2^40 x 10^-18 bytes, and are dropped
  uint64_t num = 0;
  uint64_t den = 1;
  for (size_t k = 0; k < frac_digits.size() && k < 18; ++k) {
    num = num * 10 + static_cast<uint64_t>(frac_digits[k] - '0');
    den *= 10;
  }
  uint64_t frac = 0;
  for (int bit = 0; bit < shift; ++bit) {
    num *= 2;
    frac = frac * 2 + (num >= den ? 1 : 0);
    num = num >= den ? num - den : num;
  }
  uint64_t bytes = 0;
  if (__builtin_add_overflow(whole << shift, frac, &bytes)) {
    return too_large();
  }
  if (bytes == 0) {
    return make_error("%s; '%s' is less than one byte", expected, shown.c_str());
  }
  return bytes;
}

}  // namespace baton
