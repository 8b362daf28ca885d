// GPU profiles from spec sheets, for `baton plan --simulate` on clusters this machine is
// not: peak HBM bandwidth and dense tensor FLOP/s as the vendor states them, times the
// share of peak well-tuned kernels reach (written down with each number), plus a per-step
// and per-layer overhead. Labelled estimates (device_profile::estimate) everywhere they are
// printed, until `baton bench calibrate` on the card replaces them.
#pragma once

#include <optional>
#include <string>

#include "runtime/sim/pipeline_sim.hpp"

namespace baton {

struct spec_sheet {
  device_profile profile;     ///< estimate = true
  uint64_t memory_bytes = 0;  ///< the card's memory
  std::string basis;          ///< where the numbers come from, for people
};

/// "h100-sxm", "h100-pcie", "h200", "a100-80g"; nothing for another name.
std::optional<spec_sheet> find_spec_sheet(const std::string& name);

/// The names find_spec_sheet knows, for messages: "h100-sxm, h100-pcie, h200 or a100-80g".
std::string spec_sheet_names();

}  // namespace baton
