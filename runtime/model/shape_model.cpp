// shape_model.hpp. The float types and Q8_0 are what model_builder writes directly; the
// mixtures (Q4_0, Q4_K_M, Q6_K) take the F32 shape's header through the quantizer's type
// rules and write a second header with the chosen types.
#include "runtime/model/shape_model.hpp"

#include "runtime/model/quantize.hpp"

namespace baton {

namespace {

result<std::shared_ptr<const model>> open_header(const gguf_writer& w, const std::string& name) {
  auto f = gguf_file::parse_header(w.header_bytes(), name);
  if (!f) {
    return f.err();
  }
  return model::from_file(std::move(*f));
}

}  // namespace

result<std::shared_ptr<const model>> shape_model(const model_shape& shape, ftype type) {
  const ftype_info& fi = info(type);
  const std::string name = shape.name + " (" + std::string(fi.name) + ", no weights)";
  build_options b;
  b.shape = shape;
  b.random_weights = false;
  const bool direct = !fi.mixture && (fi.default_type == ggml_type::f32 ||
                                      fi.default_type == ggml_type::f16 ||
                                      fi.default_type == ggml_type::bf16 ||
                                      fi.default_type == ggml_type::q8_0);
  b.type = direct ? fi.default_type : ggml_type::f32;
  auto w = build_model(b, nullptr);
  if (!w) {
    return w.err();
  }
  auto base = open_header(*w, name);
  if (!base || direct) {
    return base;
  }
  quantize_options q;
  q.target = type;
  q.types_only = true;
  auto plan = plan_quantization(**base, q);
  if (!plan) {
    return plan.err();
  }
  gguf_writer out;
  for (const auto& [key, value] : (*base)->file().metadata()) {
    out.set(key, value);
  }
  out.set("general.file_type", fi.id);
  out.set("general.quantization_version", uint32_t{2});
  for (const tensor_plan& t : *plan) {
    out.add_tensor(t.name, t.to, t.shape);
  }
  return open_header(out, name);
}

}  // namespace baton
