// topology_file.hpp, the file side: reading a topology file with toml++ (every key
// known, every value of the expected type and range, messages at file:line), writing
// one back, and the default topology of `--stages N`. The checks against a model and a
// world are in planner.cpp; this host's devices are described by runtime/system/device.hpp.
#include "topology/topology_file.hpp"

#include "topology/toml_fields.hpp"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <toml++/toml.h>

#include "runtime/system/device.hpp"
#include "runtime/system/files.hpp"
#include "runtime/system/units.hpp"

namespace baton {

using namespace toml_fields;

namespace {

constexpr const char* top_keys = "model, pipeline, stage";
constexpr const char* pipeline_keys =
    "micro_batches, max_num_seqs, max_num_batched_tokens, block_size, max_model_len, "
    "kv_cache_dtype";
constexpr const char* stage_keys =
    "rank, device, layers, memory_utilization, kv_cache_memory, threads";

result<pipeline_spec> read_pipeline(const std::string& file, const toml::node& node) {
  const field_ref ref{file, "[pipeline]"};
  const auto* t = node.as_table();
  if (!t) {
    return field_ref{file, ""}.wrong_type(node, "pipeline", "a table ([pipeline])");
  }
  if (auto k = check_keys(file, *t,
                          {"micro_batches", "max_num_seqs", "max_num_batched_tokens",
                           "block_size", "max_model_len", "kv_cache_dtype"},
                          "in [pipeline]", pipeline_keys);
      !k) {
    return k.err();
  }
  pipeline_spec p;
  p.line = line_of(node);
  constexpr int64_t i32 = std::numeric_limits<int32_t>::max();
  using lim = topology_limits;
  if (const auto* n = t->get("micro_batches")) {
    auto v = get_int(ref, *n, "micro_batches", 0, lim::max_micro_batches,
                     "0 to " + std::to_string(lim::max_micro_batches) + "; 0 = two per stage");
    if (!v) {
      return v.err();
    }
    p.micro_batches = static_cast<int32_t>(*v);
  }
  if (const auto* n = t->get("max_num_seqs")) {
    auto v = get_int(ref, *n, "max_num_seqs", 1, lim::max_num_seqs,
                     "1 to " + std::to_string(lim::max_num_seqs));
    if (!v) {
      return v.err();
    }
    p.max_num_seqs = static_cast<int32_t>(*v);
  }
  if (const auto* n = t->get("max_num_batched_tokens")) {
    auto v = get_int(ref, *n, "max_num_batched_tokens", 1, lim::max_num_batched_tokens,
                     "1 to " + std::to_string(lim::max_num_batched_tokens) + " tokens");
    if (!v) {
      return v.err();
    }
    p.max_num_batched_tokens = static_cast<int32_t>(*v);
  }
  if (const auto* n = t->get("block_size")) {
    auto v = get_int(ref, *n, "block_size", 1, lim::max_block_size,
                     "1 to " + std::to_string(lim::max_block_size) + " tokens");
    if (!v) {
      return v.err();
    }
    p.block_size = static_cast<int32_t>(*v);
  }
  if (const auto* n = t->get("max_model_len")) {
    auto v = get_int(ref, *n, "max_model_len", 0, i32,
                     "0 to " + std::to_string(i32) +
                         " tokens; 0 = min(the model's training context, 4096)");
    if (!v) {
      return v.err();
    }
    p.max_model_len = *v;
  }
  if (const auto* n = t->get("kv_cache_dtype")) {
    auto v = get_string(ref, *n, "kv_cache_dtype");
    if (!v) {
      return v.err();
    }
    const auto type = parse_kv_type(*v);
    if (!type) {
      return ref.fail(*n, "kv_cache_dtype", "'" + *v + "': expected \"f16\" or \"f32\"");
    }
    p.kv_type = *type;
  }
  return p;
}

result<stage_spec> read_stage(const std::string& file, const toml::node& node, size_t index) {
  const std::string owner = "stage " + std::to_string(index);
  const field_ref ref{file, owner};
  const auto* t = node.as_table();
  if (!t) {
    return field_ref{file, ""}.wrong_type(node, "stage", "an array of tables ([[stage]])");
  }
  const std::string where = "in [[stage]] " + std::to_string(index);
  if (auto k = check_keys(file, *t,
                          {"rank", "device", "layers", "memory_utilization", "kv_cache_memory",
                           "threads"},
                          where.c_str(), stage_keys);
      !k) {
    return k.err();
  }
  stage_spec s;
  s.line = line_of(node);
  if (const auto* n = t->get("rank")) {
    auto v = get_int(ref, *n, "rank", 0, topology_limits::max_world_size - 1,
                     "an MPI rank, 0 to " + std::to_string(topology_limits::max_world_size - 1));
    if (!v) {
      return v.err();
    }
    s.rank = static_cast<int32_t>(*v);
    s.rank_line = line_of(*n);
  }
  if (const auto* n = t->get("device")) {
    auto v = get_string(ref, *n, "device");
    if (!v) {
      return v.err();
    }
    if (!parse_device(*v)) {
      return ref.fail(*n, "device", "'" + *v + "': expected \"cpu\" or \"cuda:N\" (N >= 0)");
    }
    s.device = *v;
    s.device_line = line_of(*n);
  }
  if (const auto* n = t->get("layers")) {
    auto v = get_string(ref, *n, "layers");
    if (!v) {
      return v.err();
    }
    auto r = parse_layer_range(*v);
    if (!r) {
      return ref.fail(*n, "layers", r.err().message);  // "'0..3': expected ..."
    }
    s.layers = *r;
    s.layers_line = line_of(*n);
  } else {
    return make_error("%s%s has no 'layers' (expected \"A-B\", \"A\" or \"auto\")",
                      at(file, s.line).c_str(), owner.c_str());
  }
  const auto* mu = t->get("memory_utilization");
  const auto* kv = t->get("kv_cache_memory");
  if (mu && kv) {
    return make_error("%s%s sets both memory_utilization and kv_cache_memory (expected one: "
                      "a share of the device, or the KV cache's bytes)",
                      at(file, line_of(*kv)).c_str(), owner.c_str());
  }
  if (mu) {
    if (!mu->is_number()) {
      return ref.wrong_type(*mu, "memory_utilization", "a number in (0, 1]");
    }
    const double v = *mu->value<double>();
    if (!(v > 0.0 && v <= 1.0)) {
      return ref.fail(*mu, "memory_utilization",
                      value_text(*mu) + " is out of range (expected a share of the device in (0, 1])");
    }
    s.memory_utilization = v;
    s.memory_line = line_of(*mu);
  }
  if (kv) {
    if (const auto* i = kv->as_integer()) {
      if (i->get() <= 0) {
        return ref.fail(*kv, "kv_cache_memory",
                        std::to_string(i->get()) + " is out of range (expected bytes > 0)");
      }
      s.kv_cache_memory = static_cast<uint64_t>(i->get());
    } else if (const auto* str = kv->as_string()) {
      auto b = parse_bytes(str->get());
      if (!b) {
        return ref.fail(*kv, "kv_cache_memory", "'" + str->get() + "': " + b.err().message);
      }
      s.kv_cache_memory = *b;
    } else {
      return ref.wrong_type(*kv, "kv_cache_memory",
                            "bytes: an integer or a string with a unit (\"2GiB\")");
    }
    s.memory_line = line_of(*kv);
  }
  if (const auto* n = t->get("threads")) {
    auto v = get_int(ref, *n, "threads", 0, topology_limits::max_threads,
                     "0 to " + std::to_string(topology_limits::max_threads) +
                         "; 0 = the rank's share");
    if (!v) {
      return v.err();
    }
    s.threads = static_cast<int32_t>(*v);
  }
  return s;
}

/// The shortest text that reads back as the same double, always a TOML float.
std::string float_text(double v) {
  char buf[64];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  std::string s(buf, p);
  if (s.find_first_of(".eEn") == std::string::npos) {
    s += ".0";
  }
  return s;
}

}  // namespace

result<topology> parse_topology_text(std::string_view text, const std::string& name) {
  auto parsed = parse_document(text, name);
  if (!parsed) {
    return parsed.err();
  }
  const toml::table& doc = *parsed;
  if (auto k = check_keys(name, doc, {"model", "pipeline", "stage"}, "at the top level", top_keys);
      !k) {
    return k.err();
  }
  topology t;
  t.path = name;
  const field_ref top{name, ""};
  if (const auto* n = doc.get("model")) {
    auto v = get_string(top, *n, "model");
    if (!v) {
      return v.err();
    }
    if (v->empty()) {
      return top.fail(*n, "model", "empty (expected the path of a GGUF file)");
    }
    t.model = *v;
    t.model_line = line_of(*n);
  }
  if (const auto* n = doc.get("pipeline")) {
    auto p = read_pipeline(name, *n);
    if (!p) {
      return p.err();
    }
    t.pipeline = *p;
  }
  const auto* stages = doc.get("stage");
  if (!stages) {
    return make_error("%s: no stages (expected at least one [[stage]] table with rank, device "
                      "and layers)",
                      name.c_str());
  }
  const auto* arr = stages->as_array();
  if (!arr) {
    return top.wrong_type(*stages, "stage", "an array of tables ([[stage]])");
  }
  if (arr->empty()) {
    return make_error("%sno stages (expected at least one [[stage]] table with rank, device "
                      "and layers)",
                      at(name, line_of(*stages)).c_str());
  }
  for (size_t i = 0; i < arr->size(); ++i) {
    auto s = read_stage(name, *arr->get(i), i);
    if (!s) {
      return s.err();
    }
    t.stages.push_back(std::move(*s));
  }
  return t;
}

result<topology> parse_topology_file(const std::string& path) {
  // a FIFO or a device would block or never end: only regular files, and small ones
  auto text = read_regular_file(path, topology_limits::max_file_bytes, "topology file");
  if (!text) {
    return text.err();
  }
  auto t = parse_topology_text(*text, path);
  if (!t) {
    return t.err();
  }
  if (!t->model.empty()) {
    const std::filesystem::path m(t->model);
    const auto folder = std::filesystem::path(path).parent_path();
    if (m.is_relative() && !folder.empty()) {
      t->model = (folder / m).lexically_normal().string();
    }
  }
  return t;
}

std::string to_toml(const topology& t) {
  std::string out = "# baton topology";
  if (!t.path.empty()) {
    out += " (from " + t.path + ")";
  }
  out += "\n";
  if (!t.model.empty()) {
    out += "model = " + quote(t.model) + "\n";
  }
  const pipeline_spec& p = t.pipeline;
  out += "\n[pipeline]\n";
  out += "micro_batches = " + std::to_string(p.micro_batches) + "\n";
  out += "max_num_seqs = " + std::to_string(p.max_num_seqs) + "\n";
  out += "max_num_batched_tokens = " + std::to_string(p.max_num_batched_tokens) + "\n";
  out += "block_size = " + std::to_string(p.block_size) + "\n";
  out += "max_model_len = " + std::to_string(p.max_model_len) + "\n";
  out += std::string("kv_cache_dtype = ") + "\"" + kv_type_name(p.kv_type) + "\"" +
         "\n";
  for (const auto& s : t.stages) {
    out += "\n[[stage]]\n";
    out += "rank = " + std::to_string(s.rank) + "\n";
    out += "device = " + quote(s.device) + "\n";
    // "auto" only survives when the caller writes an unresolved topology
    out += "layers = " + quote(s.layers.to_string()) + "\n";
    if (s.kv_cache_memory) {
      // a TOML integer is an int64; larger sizes (parse_bytes reads up to 2^64 - 1) are
      // written as the string parse_bytes reads back
      const std::string n = std::to_string(*s.kv_cache_memory);
      const bool fits = *s.kv_cache_memory <=
                        static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
      out += "kv_cache_memory = " + (fits ? n : quote(n)) + "\n";
    } else if (s.memory_utilization) {
      out += "memory_utilization = " + float_text(*s.memory_utilization) + "\n";
    }
    if (s.threads > 0) {
      out += "threads = " + std::to_string(s.threads) + "\n";
    }
  }
  return out;
}

pipeline_spec pipeline_keys_of(const serving_config& s) {
  pipeline_spec p;
  p.micro_batches = s.micro_batches;
  p.max_num_seqs = s.max_num_seqs;
  p.max_num_batched_tokens = s.max_num_batched_tokens;
  p.block_size = s.block_size;
  p.max_model_len = s.n_ctx;
  p.kv_type = s.kv_type;
  return p;
}

serving_config with_pipeline_keys(serving_config s, const pipeline_spec& p) {
  s.micro_batches = p.micro_batches;
  s.max_num_seqs = p.max_num_seqs;
  s.max_num_batched_tokens = p.max_num_batched_tokens;
  s.block_size = p.block_size;
  s.n_ctx = p.max_model_len;
  s.kv_type = p.kv_type;
  return s;
}

topology default_topology(const std::string& model_path, int32_t n_stages) {
  topology t;
  t.path = "--stages " + std::to_string(n_stages);
  t.model = model_path;
  t.even_split = true;
  for (int32_t i = 0; i < n_stages; ++i) {
    stage_spec s;
    s.layers.automatic = true;
    t.stages.push_back(s);
  }
  return t;
}

}  // namespace baton
