// Sizes in bytes as people write and read them (powers of 1024 both ways). One pair of
// functions for every flag, topology field and message that names a size, so that what
// `baton plan` prints, `--kv-cache-memory` reads back.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "runtime/system/error.hpp"

namespace baton {

/// "2GiB", "512M", "1.5G", "1000000": bytes, units in powers of 1024 (K, M, G, T, with
/// or without B / iB); the error says what was expected, the caller names the field.
result<uint64_t> parse_bytes(std::string_view text);

/// "1.50 GiB", "12.0 MiB", "512 B": the unit that keeps the number readable.
std::string format_bytes(uint64_t n);

/// "30s", "500ms", "1.5s", "2m", "10" (seconds): a positive duration, at most a day; the
/// error says what was expected, the caller names the flag.
result<std::chrono::milliseconds> parse_duration(std::string_view text);

/// "8us", "1.5ms", "0.2s", "0": seconds >= 0 (at most an hour), for latencies; units us,
/// ms, s (none: seconds). The error says what was expected, the caller names the field.
result<double> parse_seconds(std::string_view text);

/// "100Gbit/s", "450GB/s", "3.35TB/s", "900MB/s": bytes per second > 0, in the decimal
/// units spec sheets and network links use (1 GB/s = 1e9 bytes/s, 1 Gbit/s = 1.25e8);
/// B/s, KB/s, MB/s, GB/s, TB/s, bit/s, Kbit/s, Mbit/s, Gbit/s, Tbit/s.
result<double> parse_rate(std::string_view text);

}  // namespace baton
