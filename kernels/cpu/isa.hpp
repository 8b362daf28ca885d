// Which CPU kernel variant runs: the scalar reference, AVX2 (+FMA, F16C) or AVX-512
// (F, BW, VL, VNNI). Chosen once per process from cpuid, or pinned with
// `--kernels scalar|avx2|avx512` so machines of different kinds compute bit-identically.
#pragma once

#include <optional>
#include <string_view>

namespace baton::cpu {

enum class isa { scalar, avx2, avx512 };

/// Whether this CPU (and OS) can run `v`.
bool isa_supported(isa v);
/// The best variant this CPU runs.
isa best_isa();
std::string_view isa_name(isa v);
/// "scalar", "avx2", "avx512".
std::optional<isa> parse_isa(std::string_view name);

/// The CPU's family as cpuid leaf 1 states it (base + extended; AMD 19h Zen 4, 1Ah Zen 5),
/// 0 if it does not; whether cpuid's vendor is AuthenticAMD. Kernels pick tiles and
/// prefetches by them.
unsigned cpu_family();
bool amd_cpu();

}  // namespace baton::cpu
