// Cgroup discovery and limits of cgroup.hpp: /proc/self/cgroup and /proc/self/mountinfo
// name the process's hierarchies (v1, v2 or both on hybrid hosts); the memory and CPU
// limits are read along the cgroup's ancestors up to the mount point, smallest first.
#include "runtime/system/cgroup.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "runtime/system/proc_files.hpp"

namespace baton {

using system_detail::parse_int;
using system_detail::quoted;
using system_detail::read_text;
using system_detail::split;
using system_detail::strip_trailing_slash;
using system_detail::trim;
using system_detail::words;

namespace {

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

/// v1 reports "no limit" as LONG_MAX rounded down to a page; no machine has 4 EiB.
constexpr uint64_t v1_unlimited_threshold = uint64_t{1} << 62;

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

}  // namespace baton
