#!/usr/bin/env bash
# Builds kernels/ as a project of its own and runs its tests (test_cuda_kernels and the
# unit tests that need only the kernels), for a GPU machine that has nvcc, cmake and
# ninja but none of the project's Debian packages.
#
# Run it once where /usr/src/googletest exists: it copies GoogleTest into
# third_party/googletest (git-ignored, so a remote run must carry that folder along),
# then builds and runs the tests there too (the GPU ones skip without a device).
#
#   scripts/gpu-check.sh            # build in build-gpu/, run every test
#   BATON_CUDA_ARCHS=80 scripts/gpu-check.sh
#
# Architectures: BATON_CUDA_ARCHS, else `native` where nvidia-smi sees a GPU, else 90.
# With $OUT set, the build log, the test log and GoogleTest's XML reports go there.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$PATH:/usr/local/cuda/bin"

vendored=third_party/googletest
if [[ ! -f $vendored/CMakeLists.txt && -f /usr/src/googletest/CMakeLists.txt ]]; then
  mkdir -p third_party
  cp -r /usr/src/googletest "$vendored"
  echo "gpu-check: copied /usr/src/googletest to $vendored"
fi

if [[ -n ${BATON_CUDA_ARCHS:-} ]]; then
  archs=$BATON_CUDA_ARCHS
elif nvidia-smi >/dev/null 2>&1; then
  archs=native
else
  archs=90
fi

out=${OUT:-}
log_dir=${out:-build-gpu}
mkdir -p "$log_dir"

status=0
{
  nvidia-smi || echo "gpu-check: no nvidia-smi / no GPU visible"
  cmake -S kernels -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_ARCHITECTURES="$archs"
  ninja -C build-gpu
} >"$log_dir/gpu-build.log" 2>&1 || status=$?
if [[ $status -ne 0 ]]; then
  tail -50 "$log_dir/gpu-build.log"
  echo "gpu-check: build failed (exit $status), log in $log_dir/gpu-build.log"
  exit "$status"
fi
echo "gpu-check: built for CUDA architectures '$archs'"

run_tests() {
  local failed=0 t
  for t in test_cuda_kernels test_blocks_hd test_matmul test_ops test_kernels; do
    local xml=()
    if [[ -n $out ]]; then
      xml=(--gtest_output="xml:$out/$t.xml")
    fi
    echo "== $t"
    build-gpu/bin/$t --gtest_color=no "${xml[@]}" || failed=1
  done
  return $failed
}
run_tests 2>&1 | tee "$log_dir/gpu-tests.log"
status=${PIPESTATUS[0]}

grep -E "^\[  (PASSED|FAILED|SKIPPED) \]" "$log_dir/gpu-tests.log" || true
exit "$status"
