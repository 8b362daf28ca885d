// Packing and unpacking of activation_wire.hpp.
#include "runtime/transport/activation_wire.hpp"

#include <cereal/archives/binary.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>
#include <cstdint>
#include <cstring>
#include <exception>
#include <sstream>
#include <string>

namespace baton {

wire_buffer pack_activations(const activations& a) {
  std::ostringstream os;
  {
    cereal::BinaryOutputArchive ar(os);
    ar(a.header);
  }
  const std::string head = os.str();
  const auto head_len = static_cast<uint32_t>(head.size());
  const size_t body = a.hidden.size() * sizeof(float) + a.bytes.size();
  wire_buffer buf(sizeof(head_len) + head.size() + body);
  std::memcpy(buf.data(), &head_len, sizeof(head_len));
  std::memcpy(buf.data() + sizeof(head_len), head.data(), head.size());
  char* tail = buf.data() + sizeof(head_len) + head.size();
  if (!a.hidden.empty()) {
    std::memcpy(tail, a.hidden.data(), a.hidden.size() * sizeof(float));
  }
  if (!a.bytes.empty()) {
    std::memcpy(tail + a.hidden.size() * sizeof(float), a.bytes.data(), a.bytes.size());
  }
  return buf;
}

result<activations> unpack_activations(const wire_buffer& buf) {
  uint32_t head_len = 0;
  if (buf.size() < sizeof(head_len)) {
    return make_error("activation message of %zu bytes: shorter than its header length",
                      buf.size());
  }
  std::memcpy(&head_len, buf.data(), sizeof(head_len));
  if (buf.size() < sizeof(head_len) + head_len) {
    return make_error("activation message of %zu bytes: header of %u bytes does not fit",
                      buf.size(), head_len);
  }
  activations a;
  try {
    std::istringstream is(std::string(buf.data() + sizeof(head_len), head_len));
    cereal::BinaryInputArchive ar(is);
    ar(a.header);
  } catch (const std::exception& e) {
    return make_error("activation header does not parse: %s", e.what());
  }
  const size_t n_bytes = buf.size() - sizeof(head_len) - head_len;
  if (a.header.kind == payload_kind::kv_rows) {
    if (n_bytes != a.header.n_bytes || !a.header.error.empty()) {
      return make_error("KV rows of layer %lld (epoch %llu): %zu bytes, header says %llu",
                        static_cast<long long>(a.header.layer),
                        static_cast<unsigned long long>(a.header.epoch), n_bytes,
                        static_cast<unsigned long long>(a.header.n_bytes));
    }
    a.bytes.resize(n_bytes);
    if (n_bytes > 0) {
      std::memcpy(a.bytes.data(), buf.data() + sizeof(head_len) + head_len, n_bytes);
    }
    return a;
  }
  if (a.header.kind != payload_kind::activations) {
    return make_error("a message of unknown kind %d", static_cast<int>(a.header.kind));
  }
  const auto expected = a.header.floats_on_device || !a.header.error.empty()
                            ? 0
                            : static_cast<size_t>(a.header.n_tokens) *
                                  static_cast<size_t>(a.header.n_embd) * sizeof(float);
  if (n_bytes != expected) {
    return make_error("step %llu stage %d: %zu bytes of activations, header says %d x %d floats",
                      static_cast<unsigned long long>(a.header.step), a.header.stage, n_bytes,
                      a.header.n_tokens, a.header.n_embd);
  }
  a.hidden.resize(n_bytes / sizeof(float));
  if (n_bytes > 0) {
    std::memcpy(a.hidden.data(), buf.data() + sizeof(head_len) + head_len, n_bytes);
  }
  return a;
}

}  // namespace baton
