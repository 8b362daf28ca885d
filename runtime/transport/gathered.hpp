// What the ranks of a job exchange through one MPI_Allgather (host names, agreed
// outcomes, devices, the NCCL id, the shards' endpoints), in one encoding: a JSON object
// per rank. A peer's payload is hostile input (another build of baton, a bug, a stray
// process), so reading one never throws out and never crashes: a payload that is not a
// JSON object, or lacks a field of the expected type, is an error that names the rank
// and what was being exchanged. Header-only, so that launch/ and actors/ share it.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/system/error.hpp"

namespace baton {

/// One rank's payload: compact JSON, invalid UTF-8 replaced.
inline std::string to_payload(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

/// Parses every rank's payload (in rank order) and calls `read(rank, object)` on each;
/// `read` returns result<void> and may take fields out with .at() and .get<T>(), whose
/// exceptions (a missing field, a wrong type) become the error here: "<what>: rank 2 sent
/// a malformed payload (...)". Stops at the first error.
template <class F>
result<void> read_payloads(const std::vector<std::string>& payloads, const char* what,
                           F&& read) {
  for (size_t r = 0; r < payloads.size(); ++r) {
    try {
      const nlohmann::json j = nlohmann::json::parse(payloads[r]);
      if (!j.is_object()) {
        return make_error("%s: rank %zu sent a malformed payload (not a JSON object)", what, r);
      }
      if (auto ok = read(static_cast<int32_t>(r), j); !ok) {
        return ok.err();
      }
    } catch (const nlohmann::json::exception& e) {
      return make_error("%s: rank %zu sent a malformed payload (%s)", what, r, e.what());
    }
  }
  return {};
}

}  // namespace baton
