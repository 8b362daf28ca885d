// Which kernel variants this CPU can run, from cpuid (through GCC's
// __builtin_cpu_supports, which also checks that the OS saves the wide registers), and
// the names `--kernels` takes.
#include "kernels/cpu/isa.hpp"

#include <cpuid.h>

namespace baton::cpu {

namespace {

/// F16C from cpuid leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports has no "f16c".
/// AVX2 being usable already implies the OS saves the YMM registers F16C needs.
bool has_f16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)) != 0;
}

}  // namespace

bool isa_supported(isa v) {
  switch (v) {
    case isa::scalar:
      return true;
    case isa::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
    case isa::avx512:
      // the AVX-512 twin also runs AVX2 code (activation conversion), so it needs both
      return isa_supported(isa::avx2) && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni");
  }
  return false;
}

isa best_isa() {
  if (isa_supported(isa::avx512)) {
    return isa::avx512;
  }
  if (isa_supported(isa::avx2)) {
    return isa::avx2;
  }
  return isa::scalar;
}

std::string_view isa_name(isa v) {
  switch (v) {
    case isa::scalar:
      return "scalar";
    case isa::avx2:
      return "avx2";
    case isa::avx512:
      return "avx512";
  }
  return "?";
}

std::optional<isa> parse_isa(std::string_view name) {
  for (isa v : {isa::scalar, isa::avx2, isa::avx512}) {
    if (name == isa_name(v)) {
      return v;
    }
  }
  return std::nullopt;
}

core_kind this_core() {
  static const core_kind kind = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid(0, &a, &b, &c, &d) == 0 || b != 0x68747541u) {  // "Auth"(enticAMD)
      return core_kind::other;
    }
    if (__get_cpuid(1, &a, &b, &c, &d) == 0) {
      return core_kind::other;
    }
    const unsigned family = ((a >> 8) & 0xf) + ((a >> 20) & 0xff);  // base + extended
    return family == 0x19 ? core_kind::zen4 : family == 0x1a ? core_kind::zen5 : core_kind::other;
  }();
  return kind;
}

}  // namespace baton::cpu
