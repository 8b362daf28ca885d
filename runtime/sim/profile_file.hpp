// The device profile file `baton bench calibrate -o P.json` writes and `baton plan
// --simulate --profile P.json` (or a cluster description) reads: a device's fitted speeds,
// with optional "link" and "control" objects ({"latency_s", "bytes_per_s"}).
#pragma once

#include <string>
#include <vector>

#include "runtime/sim/pipeline_sim.hpp"
#include "runtime/system/error.hpp"

namespace baton {

struct profile_file {
  device_profile device;
  sim_link link;      ///< between stages (default: free)
  sim_link control;   ///< router <-> a stage (default: free)
  bool has_link = false;
  bool has_control = false;
  double router_s = 0;      ///< the router's turn per result (sim_setup::router_s)
  double router_row_s = 0;  ///< ... and per sampled row
};

/// Reads and checks a profile; errors name the file and the key.
result<profile_file> read_profile(const std::string& path);

/// y = intercept + slope x by weighted least squares over the points (weights 1 when
/// `w` is empty): the router's turn against its rows, a link's time against its bytes.
struct line_fit {
  double intercept = 0;
  double slope = 0;
};
line_fit fit_line(const std::vector<double>& x, const std::vector<double>& y,
                  const std::vector<double>& w = {});

}  // namespace baton
