#!/usr/bin/env bash
# The live reshard's pause (issue 15) on the Llama-3.2-1B shape in Q4_0: `mpirun -np 3
# baton serve` with two stages (rank 0: layers 0-7, rank 1: layers 8-15; rank 2 on
# standby), then a reshard to three ranks that moves layers 11-15 (a third of the model)
# from rank 1 to rank 2, with about LIVE tokens of live KV: LIVE/1024 requests of
# 1024-token prompts that go on generating. For each LIVE it prints the reshard's line
# (prepare, pause, KV bytes moved) and the stages' mean step time just before it; the
# data plane's bandwidth comes from `mpirun -np 2 build/bin/bench_transport`.
#
#   bench/reshard_pause.sh [LIVE...]        (default: 1024 16384 65536)
set -euo pipefail
source "$(dirname "$0")/live_pipeline.sh"
work="$(mktemp -d /tmp/baton-reshard-pause.XXXXXX)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=18470
# KV: 2 KiB per layer and token (8 KV heads x 64 x K,V x f16); room for 80k tokens a layer
PER_LAYER_MIB=160
{ stage 0 0 7; stage 1 8 15; } >"$work/two.toml"
{ stage 0 0 7; stage 1 8 10; stage 2 11 15; } >"$work/three.toml"

body_of() {  # 1024 prompt token ids (BOS first), distinct from the second token on
  python3 - "$1" <<'EOF'
import json, sys
i = int(sys.argv[1])
ids = [128000, 1000 + i] + [1000 + (i * 7919 + j * 104729) % 100000 for j in range(1022)]
print(json.dumps({"prompt": ids, "max_tokens": 3000, "ignore_eos": True, "stream": True}))
EOF
}

for live in "${@:-1024 16384 65536}"; do
  for l in $live; do
    n=$((l / 1024))
    mpirun -np 3 --oversubscribe "$baton" serve -m "$model" --topology "$work/two.toml" \
      --port "$port" --ctx-size 4096 --max-num-seqs 128 >"$work/serve.out" 2>"$work/serve.err" &
    server=$!
    for _ in $(seq 120); do
      grep -q "serving" "$work/serve.err" 2>/dev/null && break
      sleep 1
    done
    start_streams "$n" body_of
    wait_streams "$n" 2  # every prompt computed: decoding only from here
    # the pipeline's step cadence over 3 s of decoding
    s0="$(metric 'baton:steps_total')"
    sleep 3
    s1="$(metric 'baton:steps_total')"
    blocks="$(( $(metric 'baton:kv_cache_blocks_total' | cut -d. -f1) - $(metric 'baton:kv_cache_blocks_free' | cut -d. -f1) ))"
    out="$("$baton" reshard --url "http://127.0.0.1:$port" --topology "$work/three.toml")"
    echo "live KV $((blocks * 16)) tokens ($n requests); $(awk -v a="$s0" -v b="$s1" 'BEGIN { printf "%.1f ms a step", 3000 / (b - a) }'): $out"
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    kill $(jobs -p) 2>/dev/null || true
    sleep 2
  done
done
