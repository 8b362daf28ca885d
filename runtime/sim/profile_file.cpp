// profile_file.hpp.
#include "runtime/sim/profile_file.hpp"

#include <cmath>
#include <fstream>
#include <tuple>
#include <utility>
#include <nlohmann/json.hpp>

namespace baton {

result<profile_file> read_profile(const std::string& path) {
  std::ifstream f(path);
  if (!f) {
    return make_error("%s: cannot read the profile (baton bench calibrate -o %s writes one)",
                      path.c_str(), path.c_str());
  }
  const auto j = nlohmann::json::parse(f, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return make_error("%s: not a JSON object", path.c_str());
  }
  auto number = [&](const nlohmann::json& o, const std::string& where, const char* key,
                    double& out) -> result<void> {
    if (!o.contains(key) || !o.at(key).is_number() || !(o.at(key).get<double>() >= 0) ||
        !std::isfinite(o.at(key).get<double>())) {
      return make_error("%s: '%s%s' must be a finite number >= 0", path.c_str(), where.c_str(),
                        key);
    }
    out = o.at(key).get<double>();
    return {};
  };
  profile_file p;
  device_profile& d = p.device;
  for (auto [key, out] : {std::pair{"layer_s", &d.layer_s},
                          std::pair{"half_rate_tokens", &d.half_rate_tokens},
                          std::pair{"router_s", &p.router_s},
                          std::pair{"router_row_s", &p.router_row_s}}) {
    if (j.contains(key)) {
      if (auto ok = number(j, "", key, *out); !ok) {
        return ok.err();
      }
    }
  }
  for (auto [key, out] : {std::pair{"fixed_s", &d.fixed_s},
                          std::pair{"weight_bytes_per_s", &d.weight_bytes_per_s},
                          std::pair{"flops_per_s", &d.flops_per_s},
                          std::pair{"kv_bytes_per_s", &d.kv_bytes_per_s}}) {
    if (auto ok = number(j, "", key, *out); !ok) {
      return ok.err();
    }
  }
  if (d.weight_bytes_per_s <= 0 || d.flops_per_s <= 0 || d.kv_bytes_per_s <= 0) {
    return make_error("%s: the speeds must be > 0", path.c_str());
  }
  for (auto [key, link, has] : {std::tuple{"link", &p.link, &p.has_link},
                                std::tuple{"control", &p.control, &p.has_control}}) {
    if (!j.contains(key)) {
      continue;
    }
    const auto& o = j.at(key);
    if (!o.is_object()) {
      return make_error("%s: '%s' must be an object {\"latency_s\", \"bytes_per_s\"}",
                        path.c_str(), key);
    }
    const std::string where = std::string(key) + ".";
    if (auto ok = number(o, where, "latency_s", link->latency_s); !ok) {
      return ok.err();
    }
    if (auto ok = number(o, where, "bytes_per_s", link->bytes_per_s); !ok) {
      return ok.err();
    }
    if (link->bytes_per_s <= 0) {
      return make_error("%s: '%s.bytes_per_s' must be > 0", path.c_str(), key);
    }
    if (o.contains("points")) {
      // [[bytes, seconds], ...] with the bytes ascending (baton bench link writes them)
      const auto& pts = o.at("points");
      bool ok = pts.is_array() && pts.size() <= 64;
      for (size_t i = 0; ok && i < pts.size(); ++i) {
        const auto& pt = pts[i];
        ok = pt.is_array() && pt.size() == 2 && pt[0].is_number() && pt[1].is_number() &&
             pt[0].get<double>() >= 0 && pt[1].get<double>() >= 0 &&
             std::isfinite(pt[0].get<double>()) && std::isfinite(pt[1].get<double>()) &&
             (i == 0 || pt[0].get<double>() > pts[i - 1][0].get<double>());
        if (ok) {
          link->points.emplace_back(pt[0].get<double>(), pt[1].get<double>());
        }
      }
      if (!ok) {
        return make_error("%s: '%s.points' must be at most 64 pairs [bytes, seconds] of "
                          "finite numbers >= 0, bytes ascending",
                          path.c_str(), key);
      }
    }
    *has = true;
  }
  d.name = j.contains("device") && j.at("device").is_string() ? j.at("device").get<std::string>()
                                                               : "cpu";
  d.estimate = j.contains("estimate") && j.at("estimate").is_boolean() &&
               j.at("estimate").get<bool>();
  return p;
}

line_fit fit_line(const std::vector<double>& x, const std::vector<double>& y,
                  const std::vector<double>& w) {
  double sw = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
    const double wi = i < w.size() ? w[i] : 1.0;
    sw += wi;
    sx += wi * x[i];
    sy += wi * y[i];
    sxx += wi * x[i] * x[i];
    sxy += wi * x[i] * y[i];
  }
  line_fit f;
  const double det = sw * sxx - sx * sx;
  if (sw > 0) {
    f.slope = det != 0 ? (sw * sxy - sx * sy) / det : 0;
    f.intercept = (sy - f.slope * sx) / sw;
  }
  return f;
}

}  // namespace baton
