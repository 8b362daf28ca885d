#!/usr/bin/env bash
# Runs the libFuzzer targets (clang, ASan + UBSan) for a bounded time each.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# SECONDS is per target (default 300); TARGETs default to every target below, in order.
# The http target reads its tokenizer from $BATON_FUZZ_MODEL (default: a demo model made
# here); a target's dictionary, when there is one, is tests/fuzz/<target>.dict.
# Builds in build-fuzz/ (every library instrumented), seeds each target's corpus
# (build-fuzz/corpus/<target>) from tests/fuzz/seeds/<target>/ and from fuzz_<target>_seeds
# when the build has one, keeps the corpus between runs, and prints for each target the
# executions, exec/s, coverage (libFuzzer's final "cov:" and "ft:") and corpus size. It
# fails if any target finds a crash; the reproducer is left in build-fuzz/<target>/ and its
# log in build-fuzz/<target>.log.
set -euo pipefail

# The targets it knows, each as name:max_len (libFuzzer's -max_len, bytes). Adding one is
# one line here and one baton_fuzz(...) line in tests/CMakeLists.txt.
known_targets=(
  gguf:65536
  topology:8192
  openai:16384
  http:16384
)

seconds="${1:-300}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build-fuzz"
command -v clang++ >/dev/null || { echo "fuzz: clang++ missing (scripts/setup.sh installs it)" >&2; exit 2; }
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] || { echo "fuzz: SECONDS must be a whole number > 0, got '$seconds'" >&2; exit 2; }

declare -A max_len=()
order=()
for entry in "${known_targets[@]}"; do
  max_len[${entry%%:*}]="${entry##*:}"
  order+=("${entry%%:*}")
done
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=("${order[@]}")
fi
for t in "${targets[@]}"; do
  [[ -n "${max_len[$t]:-}" ]] || { echo "fuzz: unknown target '$t' (known: ${order[*]})" >&2; exit 2; }
done

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined" \
  -DBATON_FUZZ=ON -DBATON_CUDA=OFF -DBATON_BENCH=OFF >/dev/null
build_targets=()
all_build_targets="$(cmake --build "$build" --target help)"
for t in "${targets[@]}"; do
  build_targets+=("fuzz_$t")
  if grep -q "^fuzz_${t}_seeds:" <<<"$all_build_targets"; then
    build_targets+=("fuzz_${t}_seeds")
  fi
done
if [[ " ${targets[*]} " == *" http "* && -z "${BATON_FUZZ_MODEL:-}" ]]; then
  build_targets+=(baton)  # the http target's tokenizer comes from a demo model
fi
cmake --build "$build" -j2 --target "${build_targets[@]}"
if [[ " ${targets[*]} " == *" http "* && -z "${BATON_FUZZ_MODEL:-}" ]]; then
  [[ -f "$build/demo.gguf" ]] || "$build/bin/baton" mkmodel --preset demo -o "$build/demo.gguf" >/dev/null
  export BATON_FUZZ_MODEL="$build/demo.gguf"
fi

summary=()
failed=0
for t in "${targets[@]}"; do
  corpus="$build/corpus/$t"
  mkdir -p "$corpus" "$build/$t"
  if [[ -d "$root/tests/fuzz/seeds/$t" ]]; then
    cp -n "$root/tests/fuzz/seeds/$t"/* "$corpus"/ 2>/dev/null || true
  fi
  if [[ -x "$build/bin/fuzz_${t}_seeds" ]]; then
    "$build/bin/fuzz_${t}_seeds" "$corpus"
  fi
  log="$build/$t.log"
  echo "fuzz: $t for ${seconds}s (log $log)" >&2
  status=0
  dict=()
  if [[ -f "$root/tests/fuzz/$t.dict" ]]; then
    dict=(-dict="$root/tests/fuzz/$t.dict")
  fi
  (cd "$build/$t" && "$build/bin/fuzz_$t" "${dict[@]}" -max_total_time="$seconds" -max_len="${max_len[$t]}" \
     -rss_limit_mb=4096 -timeout=25 -print_final_stats=1 "$corpus") >"$log" 2>&1 || status=$?
  # the last status line ("#123 DONE cov: 456 ft: 789 corp: 10/2Kb ...") and the final stats
  last="$(grep -E '^#[0-9]+' "$log" | tail -1 || true)"
  cov="$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")"
  ft="$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")"
  corp="$(sed -nE 's/.* corp: ([0-9]+\/[0-9A-Za-z]+).*/\1/p' <<<"$last")"
  execs="$(sed -nE 's/^stat::number_of_executed_units: ([0-9]+)/\1/p' "$log" | tail -1)"
  rate="$(sed -nE 's/^stat::average_exec_per_sec: +([0-9]+)/\1/p' "$log" | tail -1)"
  rss="$(sed -nE 's/^stat::peak_rss_mb: +([0-9]+)/\1/p' "$log" | tail -1)"
  grep -E '^stat::' "$log" | sed "s/^/fuzz: $t: /" >&2 || true
  verdict=ok
  if [[ $status -ne 0 ]]; then
    verdict="FAILED (exit $status; see $log, reproducer in $build/$t/)"
    grep -E 'ERROR: |SUMMARY: |==[0-9]+==|^artifact_prefix|Test unit written' "$log" | head -20 >&2 || true
    failed=1
  fi
  summary+=("$(printf '%-10s %12s execs %8s exec/s  cov %-6s ft %-7s corpus %-12s rss %s MB  %s' \
    "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "${rss:-?}" "$verdict")")
done

echo "fuzz: ${seconds}s per target"
printf '%s\n' "${summary[@]}"
exit $failed
