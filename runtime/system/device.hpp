// Devices: the one parser of a device name ("cpu", "cuda:N") into a typed device, and the
// query that describes a device of this host (memory, threads, bandwidth) for placement.
// Its own file because flags, topology files, the planner, the stage factory and the
// bench all name devices, and each used to parse the name its own way.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace baton {

enum class device_kind { cpu, cuda };

/// A parsed device name.
struct device_id {
  device_kind kind = device_kind::cpu;
  int index = 0;  ///< the N of "cuda:N"; 0 for the CPU
};

/// The name parse_device reads back: "cpu" or "cuda:N".
std::string to_string(const device_id& d);

/// "cuda:N".
inline std::string cuda_device_name(int index) {
  return to_string(device_id{device_kind::cuda, index});
}

/// "cpu", or "cuda:N" with N a decimal int >= 0; nothing for any other text.
std::optional<device_id> parse_device(std::string_view name);

/// The N of "cuda:N", or nothing for any other name (the CPU included).
std::optional<int> cuda_device_index(std::string_view name);

/// A device as placement sees it: what a stage's placement is checked against.
struct device_info {
  bool exists = false;
  uint64_t memory_bytes = 0;                   ///< the device's memory (cgroup limit / RAM on cpu)
  std::string source;                          ///< where the number came from, for messages
  int32_t threads = 0;                         ///< cpu: threads the rank may use (0: unknown)
  double bandwidth = 0;                        ///< memory bytes/s (0: unknown); weighs "auto"
};

/// Describes a device of this process's host: "cpu" from detect_budget() (cgroup limit,
/// else RAM; threads from the CPU quota), "cuda:N" from the CUDA runtime when baton was
/// built with CUDA (total memory), else exists = false with the reason as `source`.
device_info query_local_device(const std::string& device);

/// Whether this host has a CUDA device baton can use; `why` (when not null) says why not.
/// Always false in a build without CUDA. A runtime wrapper of kernels/cuda's own check,
/// which stays there so that kernels/ builds alone.
bool cuda_device_available(std::string* why);

}  // namespace baton
