// Device names and this host's devices (device.hpp): "cpu" is described by the budget
// (cgroup limit, else RAM; threads from the CPU quota), "cuda:N" by the CUDA runtime.
#include "runtime/system/device.hpp"

#include <charconv>
#include <system_error>

#include "runtime/backend/cuda_backend.hpp"
#include "runtime/system/budget.hpp"

namespace baton {

std::string to_string(const device_id& d) {
  return d.kind == device_kind::cpu ? "cpu" : "cuda:" + std::to_string(d.index);
}

std::optional<device_id> parse_device(std::string_view name) {
  if (name == "cpu") {
    return device_id{device_kind::cpu, 0};
  }
  constexpr std::string_view prefix = "cuda:";
  if (name.size() <= prefix.size() || name.substr(0, prefix.size()) != prefix) {
    return std::nullopt;
  }
  int n = -1;
  const char* first = name.data() + prefix.size();
  const char* last = name.data() + name.size();
  auto [p, ec] = std::from_chars(first, last, n);
  if (ec != std::errc() || p != last || n < 0) {
    return std::nullopt;
  }
  return device_id{device_kind::cuda, n};
}

std::optional<int> cuda_device_index(std::string_view name) {
  const std::optional<device_id> d = parse_device(name);
  if (!d || d->kind != device_kind::cuda) {
    return std::nullopt;
  }
  return d->index;
}

device_info query_local_device(const std::string& device) {
  device_info d;
  if (device == "cpu") {
    const resource_budget b = detect_budget();
    d.exists = true;
    d.memory_bytes = b.memory_bytes;
    d.source = b.memory_source;
    d.threads = b.threads;
    return d;
  }
  const std::optional<device_id> id = parse_device(device);
  if (!id) {
    d.source = "'" + device + "' is not a device (expected \"cpu\" or \"cuda:N\")";
    return d;
  }
  return cuda_backend::query_device(id->index);
}

bool cuda_device_available(std::string* why) { return cuda_backend::device_available(why); }

}  // namespace baton
