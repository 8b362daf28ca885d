// quantize.hpp: llama-quantize's type rules and the streaming conversion. The rules are
// llama.cpp's (src/llama-quant.cpp) restricted to what a `llama` model and baton's
// targets can reach; names, counters and order follow it, so a file converted here
// has the tensor types, and the bytes, llama-quantize writes.
#include "runtime/model/quantize.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>

#include "kernels/cpu/dequantize.hpp"
#include "kernels/cpu/quantize.hpp"
#include "runtime/model/gguf.hpp"

namespace baton {

namespace {

using ll = long long;

std::string type_name(ggml_type t) { return std::string(traits(t).name); }

/// llama.cpp's tensor_category, for the names a llama model has.
enum class category {
  token_embd,
  attn_q,
  attn_k,
  attn_v,  // also attn_qkv and attn_kv_b: tensors that carry V
  attn_output,
  ffn_up,
  ffn_gate,
  ffn_down,
  output,
  other,
};

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

category category_of(const std::string& name) {
  if (name == "output.weight") {
    return category::output;
  }
  if (name == "token_embd.weight") {
    return category::token_embd;
  }
  if (contains(name, "attn_qkv.weight") || contains(name, "attn_kv_b.weight") ||
      contains(name, "attn_v.weight")) {
    return category::attn_v;
  }
  if (contains(name, "attn_k.weight")) {
    return category::attn_k;
  }
  if (contains(name, "attn_q.weight")) {
    return category::attn_q;
  }
  if (contains(name, "attn_output.weight")) {
    return category::attn_output;
  }
  if (contains(name, "ffn_up")) {
    return category::ffn_up;
  }
  if (contains(name, "ffn_gate")) {
    return category::ffn_gate;
  }
  if (contains(name, "ffn_down")) {
    return category::ffn_down;
  }
  return category::other;
}

/// The N of "blk.N.", or -1.
int layer_of(const std::string& name) {
  int il = -1;
  if (std::sscanf(name.c_str(), "blk.%d.", &il) != 1) {
    return -1;
  }
  return il;
}

/// llama_model_loader's weight order: non-layer tensors first, then by layer number,
/// by name within a layer.
bool weight_order(const tensor_info* a, const tensor_info* b) {
  const int la = layer_of(a->name);
  const int lb = layer_of(b->name);
  if (la != lb) {
    return la < lb;
  }
  return a->name < b->name;
}

/// ggml_n_dims: trailing dimensions of size 1 do not count.
int effective_dims(const tensor_info& t) {
  for (int i = 3; i >= 1; --i) {
    if (t.ne[static_cast<size_t>(i)] > 1) {
      return i + 1;
    }
  }
  return 1;
}

/// tensor_allows_quantization, for the tensors of a llama model.
bool allows_quantization(const tensor_info& t) {
  if (effective_dims(t) < 2) {
    return false;
  }
  const std::string& n = t.name;
  const bool is_weight = n.size() >= 6 && n.compare(n.size() - 6, 6, "weight") == 0;
  return is_weight && !contains(n, "_norm.weight");
}

bool use_more_bits(int i_layer, int n_layer) {
  return i_layer < n_layer / 8 || i_layer >= 7 * n_layer / 8 || (i_layer - n_layer / 8) % 3 == 2;
}

/// quantize_state_impl: the counters the rules walk with.
struct rule_state {
  int n_attention_wv = 0;
  int i_attention_wv = 0;
  int n_ffn_down = 0;
  int i_ffn_down = 0;
  bool tied = true;  ///< no output.weight: token_embd is the head
  bool is_70b = false;
};

/// llama_tensor_get_type_impl for baton's targets on a llama model.
ggml_type rule_type(rule_state& qs, const tensor_info& t, category cat, ftype target,
                    ggml_type new_type) {
  if (cat == category::output || (qs.tied && cat == category::token_embd)) {
    if (t.ne[0] % traits(new_type).block_size != 0) {
      new_type = ggml_type::q8_0;
    } else if (new_type != ggml_type::q8_0) {
      new_type = ggml_type::q6_k;
    }
  } else if (cat == category::token_embd) {
    // only the IQ and ternary mixtures change an untied token_embd
  } else if (cat == category::attn_v) {
    if (target == ftype::q4_k_m && use_more_bits(qs.i_attention_wv, qs.n_attention_wv)) {
      new_type = ggml_type::q6_k;
    }
    if (qs.is_70b && (new_type == ggml_type::q3_k || new_type == ggml_type::q4_k)) {
      // 8 query heads share each V head: more bits cost little (llama.cpp's comment)
      new_type = ggml_type::q5_k;
    }
    ++qs.i_attention_wv;
  } else if (cat == category::ffn_down) {
    if (target == ftype::q4_k_m && use_more_bits(qs.i_ffn_down, qs.n_ffn_down)) {
      new_type = ggml_type::q6_k;
    }
    ++qs.i_ffn_down;
  }
  return new_type;
}

/// tensor_type_fallback: a row length the type's block does not divide. A row that is
/// not even a multiple of 32 ends in F16.
result<ggml_type> fallback_type(const tensor_info& t, ggml_type type, bool* fell_back) {
  const int64_t ncols = t.ne[0];
  if (ncols % traits(type).block_size == 0) {
    return type;
  }
  *fell_back = true;
  ggml_type r;
  switch (type) {
    case ggml_type::q2_k:
    case ggml_type::q3_k:
      r = ggml_type::q4_0;
      break;
    case ggml_type::q4_k:
      r = ggml_type::q5_0;
      break;
    case ggml_type::q5_k:
      r = ggml_type::q5_1;
      break;
    case ggml_type::q6_k:
      r = ggml_type::q8_0;
      break;
    case ggml_type::q4_0:
    case ggml_type::q4_1:
    case ggml_type::q5_0:
    case ggml_type::q5_1:
    case ggml_type::q8_0:
      // 32-element blocks already: only F16 is left (as llama.cpp 3.21's build does;
      // some llama.cpp versions refuse instead)
      r = type;
      break;
    default:
      return make_error(
          "tensor '%s': row length %lld is not a multiple of the %s block size "
          "%u, and %s has no fallback type (llama-quantize refuses it too)",
          t.name.c_str(), static_cast<ll>(ncols), type_name(type).c_str(), traits(type).block_size,
          type_name(type).c_str());
  }
  if (ncols % traits(r).block_size != 0) {
    r = ggml_type::f16;
  }
  return r;
}

/// The first failure inside a fill callback (which cannot return one).
struct fill_errors {
  std::mutex mu;
  std::string first;
  void add(std::string msg) {
    std::lock_guard<std::mutex> lock(mu);
    if (first.empty()) {
      first = std::move(msg);
    }
  }
};

/// Converts rows [r0, r1) of `p` from `src` into `dst`.
void convert_rows(const tensor_plan& p, const std::byte* src, std::byte* dst, int64_t r0,
                  int64_t r1, fill_errors& errors) {
  const int64_t ne0 = p.shape[0];
  const uint64_t src_row = row_bytes(p.from, static_cast<uint64_t>(ne0));
  const uint64_t dst_row = row_bytes(p.to, static_cast<uint64_t>(ne0));
  std::vector<float> row(static_cast<size_t>(ne0));
  for (int64_t r = r0; r < r1; ++r) {
    const auto ur = static_cast<uint64_t>(r);
    std::byte* out = dst + ur * dst_row;
    cpu::dequantize_row(p.from, src + ur * src_row, row.data(), ne0);
    cpu::quantize_row(p.to, row.data(), out, ne0);
    if (!cpu::row_is_finite(p.to, out, ne0)) {
      errors.add("tensor '" + p.name + "': row " + std::to_string(r) +
                 " holds a value that is not finite in " + type_name(p.to) +
                 " (inf or NaN in the source, or beyond the type's range)");
      return;
    }
  }
}

}  // namespace

result<std::vector<tensor_plan>> plan_quantization(const model& m, const quantize_options& o) {
  const gguf_file& f = m.file();
  std::vector<const tensor_info*> order;
  order.reserve(f.tensors().size());
  for (const auto& t : f.tensors()) {
    order.push_back(&t);
  }
  std::stable_sort(order.begin(), order.end(), weight_order);

  rule_state qs;
  for (const auto* t : order) {
    const category cat = category_of(t->name);
    if (cat == category::attn_v) {
      ++qs.n_attention_wv;
    }
    if (cat == category::output) {
      qs.tied = false;
    }
  }
  const model_config& c = m.config();
  qs.n_ffn_down = static_cast<int>(c.n_layer);
  // llama.cpp calls an 80-layer llama with grouped-query attention LLM_TYPE_70B
  qs.is_70b = c.n_layer == 80 && c.n_head != c.n_head_kv;

  const ggml_type base = info(o.target).default_type;
  std::vector<tensor_plan> plan;
  plan.reserve(order.size());
  for (const auto* t : order) {
    tensor_plan p;
    p.name = t->name;
    p.shape.assign(t->ne.begin(), t->ne.begin() + t->n_dims);
    p.from = t->type;
    p.to = t->type;
    if (allows_quantization(*t)) {
      p.to = base;
      if (traits(base).quantized) {
        if (!o.pure) {
          p.to = rule_type(qs, *t, category_of(t->name), o.target, base);
        }
        auto r = fallback_type(*t, p.to, &p.fallback);
        if (!r) {
          return make_error("%s: %s", f.path().c_str(), r.err().message.c_str());
        }
        p.to = *r;
      }
      if (p.to != p.from && !cpu::can_quantize(p.to) && !o.types_only) {
        return make_error(
            "%s: tensor '%s' %s would become %s under llama.cpp's %s rules, a "
            "type baton cannot compute with",
            f.path().c_str(), t->name.c_str(), t->shape_string().c_str(), type_name(p.to).c_str(),
            (std::string(info(o.target).name) + (o.pure ? " --pure" : "")).c_str());
      }
    }
    if (p.to != p.from && !cpu::can_dequantize(p.from) && !o.types_only) {
      return make_error("%s: tensor '%s' has type %s, which baton cannot convert", f.path().c_str(),
                        t->name.c_str(), type_name(p.from).c_str());
    }
    plan.push_back(std::move(p));
  }
  return plan;
}

result<quantize_summary> quantize_model(const std::string& in, const std::string& out,
                                        const quantize_options& o) {
  if (o.n_threads < 1) {
    return make_error("quantize: threads is %d, expected >= 1", o.n_threads);
  }
  auto m = model::open(in);
  if (!m) {
    return m.err();
  }
  std::error_code ec;
  if (std::filesystem::exists(out, ec) && std::filesystem::equivalent(in, out, ec)) {
    return make_error("quantize: the output %s is the input file; write to another path",
                      out.c_str());
  }
  auto plan = plan_quantization(**m, o);
  if (!plan) {
    return plan.err();
  }
  const gguf_file& f = (*m)->file();

  gguf_writer w(3);
  // Metadata in the source's order; llama-quantize re-adds these two keys at the end.
  for (const auto& [key, value] : f.metadata()) {
    if (key == "general.quantization_version" || key == "general.file_type") {
      continue;
    }
    if (key == "general.alignment") {
      w.set_alignment(f.alignment());
      continue;
    }
    w.set(key, value);
  }
  w.set("general.quantization_version", uint32_t{2});
  w.set("general.file_type", info(o.target).id);

  quantize_summary s;
  s.file_type = info(o.target).id;
  auto errors = std::make_shared<fill_errors>();
  const int n_threads = o.n_threads;
  for (const auto& p : *plan) {
    const tensor_info* src = f.find_tensor(p.name);
    BATON_ASSERT(src != nullptr);
    const int64_t ne0 = p.shape[0];
    const int64_t n_rows = src->n_elements() / ne0;
    ++s.n_tensors;
    s.bytes_in += src->n_bytes;
    s.bytes_out += row_bytes(p.to, static_cast<uint64_t>(ne0)) * static_cast<uint64_t>(n_rows);
    s.n_fallback += p.fallback ? 1 : 0;
    if (p.to == p.from) {
      w.add_tensor(p.name, p.to, p.shape, [src](std::span<std::byte> dst) {
        BATON_ASSERT(dst.size() == src->n_bytes);
        std::memcpy(dst.data(), src->data, dst.size());
      });
      continue;
    }
    ++s.n_converted;
    w.add_tensor(p.name, p.to, p.shape,
                 [p, src, n_rows, n_threads, errors](std::span<std::byte> dst) {
                   // contiguous row ranges, one per thread (small tensors are not worth
                   // one); rows are independent, so the bytes do not depend on the count
                   const int64_t by_size = std::max<int64_t>(1, src->n_elements() / (1 << 18));
                   const int64_t n_use = std::min<int64_t>({n_threads, by_size, n_rows});
                   std::vector<std::thread> workers;
                   for (int64_t it = 1; it < n_use; ++it) {
                     workers.emplace_back([&, it] {
                       convert_rows(p, src->data, dst.data(), n_rows * it / n_use,
                                    n_rows * (it + 1) / n_use, *errors);
                     });
                   }
                   convert_rows(p, src->data, dst.data(), 0, n_rows / n_use, *errors);
                   for (auto& t : workers) {
                     t.join();
                   }
                 });
  }
  auto written = w.write(out);
  if (!written) {
    std::filesystem::remove(out, ec);
    return written.err();
  }
  if (!errors->first.empty()) {
    std::filesystem::remove(out, ec);
    return make_error("%s: %s", in.c_str(), errors->first.c_str());
  }
  s.tensors = std::move(*plan);
  return s;
}

}  // namespace baton
