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

/// The cores the AVX-512 kernels were measured on, as cpuid states the vendor and family:
/// AMD family 19h (Zen 4), AMD family 1Ah (Zen 5), or another. Kernels pick tiles,
/// prefetches and layouts by it.
enum class core_kind { zen4, zen5, other };
core_kind this_core();

}  // namespace baton::cpu
