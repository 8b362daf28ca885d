// The CUDA stage declared in cuda_stage.hpp. The step is cpu_stage's, kernel for kernel; the comments
// there give the shapes. One file of some 520 lines because it is one class whose parts
// (creation, the weights' upload, the buffers, the step) share the device, the stream
// and the buffers they grow; the kernels it launches are in kernels/cuda.
#include "runtime/compute/cuda_stage.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>

#include "kernels/cpu/matmul.hpp"
#include "kernels/cpu/ops.hpp"
#include "runtime/system/units.hpp"
#include "runtime/compute/kv_storage.hpp"
#include "runtime/compute/pooled_floats.hpp"

namespace baton {

namespace {

constexpr size_t k_align = 256;

size_t aligned(size_t n) { return (n + k_align - 1) / k_align * k_align; }

std::string free_memory_text() {
  size_t free = 0, total = 0;
  if (cudaMemGetInfo(&free, &total) != cudaSuccess) {
    return "free memory unknown";
  }
  return format_bytes(free) + " free of " + format_bytes(total);
}

}  // namespace

cuda_stage::buffer::~buffer() {
  if (p) {
    cudaFree(p);
  }
}

cuda_stage::cuda_stage(const stage_compute_options& o, int index)
    : model_(o.m),
      first_(o.first_layer),
      last_(o.last_layer),
      device_(index),
      keep_output_on_device_(o.keep_output_on_device) {}

cuda_stage::~cuda_stage() {
  // the buffers free on this thread's current device: make it ours
  cudaSetDevice(device_);
  if (stream_) {
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
}

result<void> cuda_stage::check(cudaError_t e, const char* what) const {
  if (e == cudaSuccess) {
    return {};
  }
  cudaGetLastError();  // reported here: the thread's next launch must not report it again
  return make_error("%s: %s: %s", name_.c_str(), what, cudaGetErrorString(e));
}

result<std::unique_ptr<cuda_stage>> cuda_stage::create(const stage_compute_options& o,
                                                       int index) {
  int n = 0;
  if (const cudaError_t e = cudaGetDeviceCount(&n); e != cudaSuccess || n == 0) {
    return make_error("device cuda:%d: no CUDA device (%s)", index,
                      e != cudaSuccess ? cudaGetErrorString(e) : "none found");
  }
  if (index >= n) {
    return make_error("device cuda:%d: this host has %d CUDA device%s (cuda:0..cuda:%d)", index,
                      n, n == 1 ? "" : "s", n - 1);
  }
  const model_config& c = o.m->config();
  BATON_ASSERT(0 <= o.first_layer && o.first_layer < o.last_layer && o.last_layer <= c.n_layer);
  if (o.kv_type != ggml_type::f16 && o.kv_type != ggml_type::f32) {
    return make_error("device cuda:%d: KV cache type %s: the CUDA kernels keep f16 or f32", index,
                      std::string(traits(o.kv_type).name).c_str());
  }
  if (c.n_embd_head_k > 256 || c.n_embd_head_k != c.n_embd_head_v) {
    return make_error("device cuda:%d: head size %lld: the CUDA attention kernel takes up to 256",
                      index, static_cast<long long>(c.n_embd_head_k));
  }
  std::unique_ptr<cuda_stage> s(new cuda_stage(o, index));
  cudaDeviceProp prop{};
  if (auto ok = s->check(cudaSetDevice(index), "cudaSetDevice"); !ok) {
    return ok.err();
  }
  s->name_ = cuda_device_name(index);
  if (cudaGetDeviceProperties(&prop, index) == cudaSuccess) {
    s->name_ += std::string(" (") + prop.name + ")";
  }
  cudaGetLastError();  // the name is only for messages
  if (auto ok = s->check(cudaStreamCreateWithFlags(&s->stream_, cudaStreamNonBlocking),
                         "cudaStreamCreate");
      !ok) {
    return ok.err();
  }
  if (auto ok = s->upload(o); !ok) {
    return ok.err();
  }
  // KV: per layer, K blocks then V blocks, zeroed (as the CPU's)
  const int64_t n_layers = o.last_layer - o.first_layer;
  const size_t block_bytes = static_cast<size_t>(o.block_size) *
                             static_cast<size_t>(c.n_embd_k_gqa()) * traits(o.kv_type).type_size;
  const size_t per_layer = block_bytes * static_cast<size_t>(o.n_blocks);
  if (cudaMalloc(&s->kv_.p, 2 * per_layer * static_cast<size_t>(n_layers)) != cudaSuccess) {
    cudaGetLastError();  // clear the allocation error
    return make_error("%s: cannot allocate the KV cache (%s for %d blocks of %d tokens, "
                      "layers [%lld, %lld)): %s; lower --memory-utilization's share for KV, "
                      "--max-num-seqs or --max-model-len",
                      s->name_.c_str(),
                      format_bytes(2 * per_layer * static_cast<size_t>(n_layers)).c_str(),
                      o.n_blocks, o.block_size, static_cast<long long>(o.first_layer),
                      static_cast<long long>(o.last_layer), free_memory_text().c_str());
  }
  s->kv_.bytes = 2 * per_layer * static_cast<size_t>(n_layers);
  if (auto ok = s->check(cudaMemsetAsync(s->kv_.p, 0, s->kv_.bytes, s->stream_),
                         "zeroing the KV cache");
      !ok) {
    return ok.err();
  }
  for (int64_t i = 0; i < n_layers; ++i) {
    cuda::paged_kv kv;
    kv.k = s->kv_.as<uint8_t>() + static_cast<size_t>(2 * i) * per_layer;
    kv.v = s->kv_.as<uint8_t>() + static_cast<size_t>(2 * i + 1) * per_layer;
    kv.n_blocks = o.n_blocks;
    kv.block_size = o.block_size;
    kv.n_head_kv = c.n_head_kv;
    kv.head_dim = c.n_embd_head_k;
    kv.type = o.kv_type;
    s->kv_layers_.push_back(kv);
  }
  if (const auto* rf = o.m->weights().rope_freqs) {
    s->rope_freqs_.resize(static_cast<size_t>(rf->n_elements()));
    std::memcpy(s->rope_freqs_.data(), rf->data, rf->n_bytes);
  }
  // scratch for the largest step now: a device too small fails here, not mid-serving
  if (o.max_tokens > 0) {
    // a step's tables: at most min(sequences, tokens) of them, each of a context's blocks
    const int64_t per_seq = (std::max<int64_t>(o.max_context, 1) + o.block_size - 1) / o.block_size;
    const auto tables = static_cast<size_t>(std::min(o.max_logits, o.max_tokens)) *
                        static_cast<size_t>(per_seq);
    if (auto ok = s->reserve(o.max_tokens, std::max(o.max_logits, 1), tables); !ok) {
      return ok.err();
    }
  }
  // activations handed to the next GPU stage come from the stream-ordered pool: keep
  // what it frees instead of returning it to the driver after every step
  cudaMemPool_t pool = nullptr;
  if (cudaDeviceGetDefaultMemPool(&pool, index) == cudaSuccess) {
    uint64_t keep = UINT64_MAX;
    cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
  }
  cudaGetLastError();  // neither is needed to run
  if (auto ok = s->check(cudaStreamSynchronize(s->stream_), "setting up"); !ok) {
    return ok.err();
  }
  return s;
}

result<void> cuda_stage::upload(const stage_compute_options& o) {
  const model_weights& w = o.m->weights();
  const bool first = o.first_layer == 0;
  const bool last = o.last_layer == o.m->config().n_layer;
  // the tensors this stage reads, each once (a tied head is the embedding)
  std::vector<const tensor_info*> tensors;
  auto want = [&](const tensor_info* t) {
    for (const auto* have : tensors) {
      if (have == t) {
        return;
      }
    }
    tensors.push_back(t);
  };
  if (first) {
    want(w.token_embd);
  }
  for (int64_t il = o.first_layer; il < o.last_layer; ++il) {
    const layer_weights& l = w.layers[static_cast<size_t>(il)];
    for (const auto* t : {l.attn_norm, l.wq, l.wk, l.wv, l.wo, l.ffn_norm, l.ffn_gate, l.ffn_up,
                          l.ffn_down}) {
      want(t);
    }
  }
  if (last) {
    want(w.output_norm);
    want(w.head());
  }
  for (const auto* t : tensors) {
    if (t->ne[1] > 1 && !cpu::has_matmul(t->type)) {
      return make_error("%s: tensor '%s' is %s: the CUDA kernels multiply f32, f16, bf16, q8_0, "
                        "q4_0, q4_K and q6_K weights",
                        name_.c_str(), t->name.c_str(), std::string(traits(t->type).name).c_str());
    }
  }
  size_t total = 0;
  std::map<const tensor_info*, size_t> offset;
  for (const auto* t : tensors) {
    offset[t] = total;
    total += aligned(t->n_bytes);
  }
  if (cudaMalloc(&weights_.p, total) != cudaSuccess) {
    cudaGetLastError();
    return make_error("%s: cannot allocate %s for the weights of layers [%lld, %lld): %s",
                      name_.c_str(), format_bytes(total).c_str(),
                      static_cast<long long>(o.first_layer), static_cast<long long>(o.last_layer),
                      free_memory_text().c_str());
  }
  weights_.bytes = total;
  for (const auto* t : tensors) {
    if (auto ok = check(cudaMemcpy(weights_.as<uint8_t>() + offset[t], t->data, t->n_bytes,
                                   cudaMemcpyHostToDevice),
                        "uploading weights");
        !ok) {
      return ok.err();
    }
    // no host copy stays: the file's pages go back to the page cache (re-read on demand
    // if a CPU stage of this process reads the same tensor)
    o.m->file().release_pages(t->data, t->n_bytes);
  }
  auto on_device = [&](const tensor_info* t) -> const void* {
    return weights_.as<uint8_t>() + offset[t];
  };
  auto as_matrix = [&](const tensor_info* t) {
    return matrix{on_device(t), t->type, t->ne[0], t->ne[1]};
  };
  if (first) {
    embd_ = as_matrix(w.token_embd);
  }
  for (int64_t il = o.first_layer; il < o.last_layer; ++il) {
    const layer_weights& l = w.layers[static_cast<size_t>(il)];
    layer d;
    d.attn_norm = static_cast<const float*>(on_device(l.attn_norm));
    d.ffn_norm = static_cast<const float*>(on_device(l.ffn_norm));
    d.wq = as_matrix(l.wq);
    d.wk = as_matrix(l.wk);
    d.wv = as_matrix(l.wv);
    d.wo = as_matrix(l.wo);
    d.gate = as_matrix(l.ffn_gate);
    d.up = as_matrix(l.ffn_up);
    d.down = as_matrix(l.ffn_down);
    layers_.push_back(d);
  }
  if (last) {
    output_norm_ = static_cast<const float*>(on_device(w.output_norm));
    head_ = as_matrix(w.head());
  }
  return {};
}

result<void> cuda_stage::grow(buffer& b, size_t bytes, const char* what) {
  if (b.bytes >= bytes) {
    return {};
  }
  if (b.p) {
    cudaFree(b.p);
    b.p = nullptr;
    b.bytes = 0;
  }
  const size_t want = std::max(bytes, k_align);
  if (cudaMalloc(&b.p, want) != cudaSuccess) {
    cudaGetLastError();
    b.p = nullptr;
    return make_error("%s: cannot allocate %s for %s: %s", name_.c_str(),
                      format_bytes(want).c_str(), what, free_memory_text().c_str());
  }
  b.bytes = want;
  return {};
}

result<void> cuda_stage::reserve(int64_t n_tokens, int64_t n_logits, size_t n_table_entries) {
  const model_config& c = model_->config();
  const auto n = static_cast<size_t>(n_tokens);
  const size_t f = sizeof(float);
  const auto n_q = static_cast<size_t>(c.n_head * c.n_embd_head_k);
  const auto n_kv = static_cast<size_t>(c.n_embd_k_gqa());
  const auto n_embd = static_cast<size_t>(c.n_embd);
  const auto n_ff = static_cast<size_t>(c.n_ff);
  // the widest activation row any of this stage's matmuls converts
  size_t xq_row = 0;
  auto widen = [&](const matrix& m) {
    if (m.data) {
      xq_row = std::max(xq_row, cpu::activation_row_bytes(m.type, m.n_in));
    }
  };
  for (const layer& l : layers_) {
    for (const matrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down}) {
      widen(*m);
    }
  }
  widen(head_);
  for (auto [b, bytes, what] : {std::tuple{&x_, n * n_embd * f, "activations"},
                                std::tuple{&cur_, n * n_embd * f, "activations"},
                                std::tuple{&q_, n * n_q * f, "queries"},
                                std::tuple{&k_, n * n_kv * f, "keys"},
                                std::tuple{&v_, n * n_kv * f, "values"},
                                std::tuple{&attn_, n * n_q * f, "attention output"},
                                std::tuple{&gate_, n * n_ff * f, "feed-forward"},
                                std::tuple{&up_, n * n_ff * f, "feed-forward"},
                                std::tuple{&xq_, n * xq_row, "converted activations"},
                                std::tuple{&cs_, n * static_cast<size_t>(c.n_rot) * f, "rope"},
                                std::tuple{&meta_, (5 * n + n_table_entries) * sizeof(int32_t),
                                           "step metadata"}}) {
    if (auto ok = grow(*b, bytes, what); !ok) {
      return ok;
    }
  }
  if (head_.data) {
    return grow(logits_, static_cast<size_t>(n_logits) * static_cast<size_t>(c.n_vocab) * f,
                "logits");
  }
  return {};
}

result<void> cuda_stage::matmul(const matrix& w, const float* x, int64_t n_tokens, float* y) {
  if (auto ok = check(cuda::quantize_activations(w.type, x, xq_.p, w.n_in, n_tokens, stream_),
                      "converting activations");
      !ok) {
    return ok;
  }
  return check(cuda::matmul(w.type, w.data, xq_.p, y, w.n_in, w.n_out, n_tokens, w.n_out, stream_),
               "matmul");
}

result<void> cuda_stage::take_input(stage_activations& io, size_t n_floats) {
  float* x = x_.as<float>();
  const size_t bytes = n_floats * sizeof(float);
  if (!io.on_device) {
    if (io.host.size() < n_floats) {
      return make_error("%s: %zu activations for a step of %zu", name_.c_str(), io.host.size(),
                        n_floats);
    }
    return check(cudaMemcpyAsync(x, io.host.data(), bytes, cudaMemcpyHostToDevice, stream_),
                 "uploading activations");
  }
  // the previous stage synchronized its stream before handing them over
  if (io.device == device_) {
    return check(cudaMemcpyAsync(x, io.on_device.get(), bytes, cudaMemcpyDeviceToDevice, stream_),
                 "copying activations on the device");
  }
  // an explicit peer copy: it needs no peer access enabled (which pool allocations
  // would not follow anyway), and goes over NVLink/PCIe peer to peer where there is one
  return check(cudaMemcpyPeerAsync(x, device_, io.on_device.get(), io.device, bytes, stream_),
               "copying activations between devices");
}

result<void> cuda_stage::give_output(stage_activations& io, size_t n_floats) {
  const size_t bytes = n_floats * sizeof(float);
  io.on_device.reset();
  io.device = -1;
  if (!keep_output_on_device_) {
    io.host.resize(n_floats);
    return check(cudaMemcpyAsync(io.host.data(), x_.p, bytes, cudaMemcpyDeviceToHost, stream_),
                 "downloading activations");
  }
  // a buffer of their own (x_ is overwritten by the next step while the next stage may
  // still be reading), from the stream-ordered pool: no device-wide synchronization
  if (auto ok = check(pooled_floats(bytes, device_, stream_, io.on_device),
                      "allocating activations");
      !ok) {
    return ok;
  }
  io.device = device_;
  io.host.clear();
  return check(cudaMemcpyAsync(io.on_device.get(), x_.p, bytes, cudaMemcpyDeviceToDevice, stream_),
               "keeping activations on the device");
}

result<void> cuda_stage::forward(const batch& b, stage_activations& io,
                                 std::vector<float>& logits) {
  const model_config& c = model_->config();
  const int64_t n_tokens = b.n_tokens();
  const int64_t n_embd = c.n_embd;
  const int64_t head_dim = c.n_embd_head_k;
  const int64_t n_q = c.n_head * head_dim;
  const int64_t n_kv = c.n_embd_k_gqa();
  const bool first = first_ == 0;
  const bool last = last_ == c.n_layer;
  const int64_t n_out = last ? b.n_logits() : 0;
  if (!broken_.empty()) {
    return make_error("%s", broken_.c_str());
  }
  if (n_tokens == 0) {
    if (last) {
      logits.clear();
    }
    return {};
  }
  if (auto ok = check(cudaSetDevice(device_), "cudaSetDevice"); !ok) {
    return ok;
  }
  cudaGetLastError();  // an error some other call on this thread left must not fail this step
  // the previous stage's device buffer lives until this step's copy of it has run (the
  // output below replaces io's reference before the stream is synchronized)
  const std::shared_ptr<float> input_hold = io.on_device;

  // -- the step's metadata, one upload: tokens, KV slots, n_kv and block-table offset
  // per token, the rows that want logits, then the block tables -------------------------
  const auto n = static_cast<size_t>(n_tokens);
  if (auto ok = build_step_metadata(b, static_cast<int32_t>(kv_layers_.front().block_size),
                                    c.n_vocab, first, last, meta_host_);
      !ok) {
    return make_error("%s: %s", name_.c_str(), ok.err().message.c_str());
  }
  if (auto ok = reserve(n_tokens, n_out,
                        meta_host_.ints.size() -
                            static_cast<size_t>(step_metadata::offset_of_tables(n_tokens)));
      !ok) {
    return ok;
  }
  // the same layout on the device: pointers at the host arrays' offsets
  const auto* meta_dev = meta_.as<int32_t>();
  auto on_device = [&](const int32_t* host) { return meta_dev + (host - meta_host_.ints.data()); };
  const int32_t* d_token = on_device(meta_host_.token());
  const int32_t* d_slot = on_device(meta_host_.slot());
  const int32_t* d_kv_len = on_device(meta_host_.n_kv());
  const int32_t* d_table_offset = on_device(meta_host_.table_offset());
  const int32_t* d_logit_rows = on_device(meta_host_.logit_rows());
  const int32_t* d_tables = on_device(meta_host_.tables());
  // rope angles: the CPU's own function, so both backends rotate by the same floats
  cs_host_.resize(n * static_cast<size_t>(c.n_rot));
  const float* freq = rope_freqs_.empty() ? nullptr : rope_freqs_.data();
  for (size_t t = 0; t < n; ++t) {
    cpu::rope_cache(b.pos[t], c.n_rot, c.rope_freq_base, freq,
                    cs_host_.data() + t * static_cast<size_t>(c.n_rot));
  }
  float* x = x_.as<float>();
  float* cur = cur_.as<float>();
  float* q = q_.as<float>();
  float* k = k_.as<float>();
  float* v = v_.as<float>();
  float* attn = attn_.as<float>();
  float* gate = gate_.as<float>();
  float* up = up_.as<float>();
  const float eps = c.rms_norm_eps;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  // every call below is checked; the first failure ends the step with its name
  result<void> ok;
  auto run = [&](cudaError_t e, const char* what) {
    if (ok) {
      ok = check(e, what);
    }
    return static_cast<bool>(ok);
  };
  run(cudaMemcpyAsync(meta_.p, meta_host_.ints.data(), meta_host_.ints.size() * sizeof(int32_t),
                      cudaMemcpyHostToDevice, stream_),
      "uploading the step");
  run(cudaMemcpyAsync(cs_.p, cs_host_.data(), cs_host_.size() * sizeof(float),
                      cudaMemcpyHostToDevice, stream_),
      "uploading rope angles");
  if (first) {
    run(cuda::get_rows(embd_.type, embd_.data, n_embd, d_token, n_tokens, x, stream_),
        "embedding rows");
  } else if (ok) {
    ok = take_input(io, n * static_cast<size_t>(n_embd));
  }
  auto mm = [&](const matrix& w, const float* in, float* out) {
    if (ok) {
      ok = matmul(w, in, n_tokens, out);
    }
  };
  for (size_t i = 0; i < layers_.size() && ok; ++i) {
    const layer& l = layers_[i];
    const cuda::paged_kv& kv = kv_layers_[i];
    run(cuda::rms_norm(x, l.attn_norm, cur, n_embd, n_tokens, eps, stream_), "rms_norm");
    mm(l.wq, cur, q);
    mm(l.wk, cur, k);
    mm(l.wv, cur, v);
    run(cuda::rope(q, n_tokens, c.n_head, head_dim, n_q, c.n_rot, cs_.as<float>(), stream_),
        "rope");
    run(cuda::rope(k, n_tokens, c.n_head_kv, head_dim, n_kv, c.n_rot, cs_.as<float>(), stream_),
        "rope");
    run(cuda::kv_store(kv, k, v, d_slot, n_tokens, stream_), "kv_store");
    run(cuda::attention(kv, q, n_tokens, c.n_head, d_tables, d_table_offset, d_kv_len, scale,
                        attn, stream_),
        "attention");
    mm(l.wo, attn, cur);
    run(cuda::add(x, cur, n_tokens * n_embd, stream_), "add");
    run(cuda::rms_norm(x, l.ffn_norm, cur, n_embd, n_tokens, eps, stream_), "rms_norm");
    mm(l.gate, cur, gate);
    mm(l.up, cur, up);
    run(cuda::silu_mul(gate, up, gate, n_tokens * c.n_ff, stream_), "silu_mul");
    mm(l.down, gate, cur);
    run(cuda::add(x, cur, n_tokens * n_embd, stream_), "add");
  }
  if (last) {
    logits.resize(static_cast<size_t>(n_out * c.n_vocab));
    if (n_out > 0) {
      run(cuda::get_rows(ggml_type::f32, x, n_embd, d_logit_rows, n_out, cur, stream_),
          "gathering logit rows");
      // x is free now: the normed rows go there
      run(cuda::rms_norm(cur, output_norm_, x, n_embd, n_out, eps, stream_), "rms_norm");
      if (ok) {
        ok = matmul(head_, x, n_out, logits_.as<float>());
      }
      run(cudaMemcpyAsync(logits.data(), logits_.p, logits.size() * sizeof(float),
                          cudaMemcpyDeviceToHost, stream_),
          "downloading logits");
    }
  } else if (ok) {
    ok = give_output(io, n * static_cast<size_t>(n_embd));
  }
  // kernels fail asynchronously: the step is done (or failed) only here
  const cudaError_t done = cudaStreamSynchronize(stream_);
  if (done != cudaSuccess) {
    // a fault in a kernel (illegal address, launch failure) leaves the device unusable
    // for this process: every later step says so instead of running
    broken_ = name_ + ": the device failed (" + cudaGetErrorString(done) +
              ") and cannot run more steps in this process; restart it";
    return make_error("%s", broken_.c_str());
  }
  return ok;
}

namespace {

/// Bytes of one block of one layer's K (or V).
size_t kv_block_bytes(const cuda::paged_kv& kv) {
  return static_cast<size_t>(kv.block_size * kv.n_head_kv * kv.head_dim) *
         traits(kv.type).type_size;
}

}  // namespace

result<byte_buffer> cuda_stage::export_kv(int64_t il,
                                                   std::span<const int32_t> blocks) const {
  const cuda::paged_kv& any = kv_layers_.front();
  const size_t bb = kv_block_bytes(any);
  if (auto ok = check_kv_rows(il, first_, last_, blocks, static_cast<int32_t>(any.n_blocks),
                              bb, std::nullopt);
      !ok) {
    return make_error("%s: %s", name_.c_str(), ok.err().message.c_str());
  }
  if (!broken_.empty()) {
    return make_error("%s", broken_.c_str());
  }
  const cuda::paged_kv& kv = kv_layers_[static_cast<size_t>(il - first_)];
  byte_buffer rows(2 * blocks.size() * bb);
  uint8_t* out = rows.data();
  if (auto ok = check(cudaSetDevice(device_), "cudaSetDevice"); !ok) {
    return ok.err();
  }
  for (const void* base : {kv.k, kv.v}) {
    for (const int32_t b : blocks) {
      const auto* src = static_cast<const uint8_t*>(base) + static_cast<size_t>(b) * bb;
      if (auto ok = check(cudaMemcpyAsync(out, src, bb, cudaMemcpyDeviceToHost, stream_),
                          "exporting KV rows");
          !ok) {
        return ok.err();
      }
      out += bb;
    }
  }
  if (auto ok = check(cudaStreamSynchronize(stream_), "exporting KV rows"); !ok) {
    return ok.err();
  }
  return rows;
}

result<void> cuda_stage::import_kv(int64_t il, std::span<const int32_t> blocks,
                                   std::span<const uint8_t> rows) {
  const cuda::paged_kv& any = kv_layers_.front();
  const size_t bb = kv_block_bytes(any);
  if (auto ok = check_kv_rows(il, first_, last_, blocks, static_cast<int32_t>(any.n_blocks),
                              bb, rows.size());
      !ok) {
    return make_error("%s: %s", name_.c_str(), ok.err().message.c_str());
  }
  if (!broken_.empty()) {
    return make_error("%s", broken_.c_str());
  }
  const cuda::paged_kv& kv = kv_layers_[static_cast<size_t>(il - first_)];
  const uint8_t* in = rows.data();
  if (auto ok = check(cudaSetDevice(device_), "cudaSetDevice"); !ok) {
    return ok;
  }
  for (void* base : {kv.k, kv.v}) {
    for (const int32_t b : blocks) {
      auto* dst = static_cast<uint8_t*>(base) + static_cast<size_t>(b) * bb;
      if (auto ok = check(cudaMemcpyAsync(dst, in, bb, cudaMemcpyHostToDevice, stream_),
                          "importing KV rows");
          !ok) {
        return ok;
      }
      in += bb;
    }
  }
  // the rows are the caller's: they must have reached the device before it lets go
  return check(cudaStreamSynchronize(stream_), "importing KV rows");
}

}  // namespace baton
