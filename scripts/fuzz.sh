#!/usr/bin/env bash
# Fuzzes the GGUF reader with libFuzzer (clang, ASan + UBSan) for a bounded time.
#   scripts/fuzz.sh [SECONDS]      (default 300)
# Builds in build-fuzz/ (every library instrumented), seeds the corpus with small valid
# files, and fails if the fuzzer finds a crash (the reproducer is left in build-fuzz/).
set -euo pipefail
seconds="${1:-300}"
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build-fuzz"
command -v clang++ >/dev/null || { echo "fuzz: clang++ missing (scripts/setup.sh installs it)" >&2; exit 2; }

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined" \
  -DBATON_FUZZ=ON -DBATON_CUDA=OFF -DBATON_BENCH=OFF >/dev/null
cmake --build "$build" -j2 --target fuzz_gguf fuzz_gguf_seeds

corpus="$build/corpus"
mkdir -p "$corpus"
"$build/bin/fuzz_gguf_seeds" "$corpus"
cd "$build"
echo "fuzz: running for ${seconds}s" >&2
"$build/bin/fuzz_gguf" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=4096 \
  -print_final_stats=1 "$corpus"
