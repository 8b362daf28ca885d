#!/usr/bin/env bash
# Time to recover from a dead stage (issue 16) on the Llama-3.2-1B shape in Q4_0:
# `mpirun --enable-recovery -np 4 baton serve` with three stages (rank 0: layers 0-5,
# rank 1: 6-10, rank 2: 11-15) and rank 3 on standby; 16 streams of 512-token prompts
# generate, then rank 2 is killed (kill -9). Prints the detection time (the kill to the
# head's "detected" line, polled every 10 ms), the plan, load and replay phases from the
# head's log, the replayed tokens, and the goal: load + replayed tokens at the prefill
# speed measured on the same job's prompts + 1 s.
#
#   bench/recovery.sh [STREAMS]        (default 16)
set -euo pipefail
source "$(dirname "$0")/live_pipeline.sh"
n="${1:-16}"
work="$(mktemp -d /tmp/baton-recovery.XXXXXX)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=18490
PER_LAYER_MIB=40  # 20k tokens a layer
{ stage 0 0 5; stage 1 6 10; stage 2 11 15; } >"$work/three.toml"
now() { date +%s.%N; }
body_of() {  # 512 prompt token ids (BOS first), distinct from the second token on
  python3 - "$1" <<'PY'
import json, sys
i = int(sys.argv[1])
ids = [128000, 1000 + i] + [1000 + (i * 7919 + j * 104729) % 100000 for j in range(510)]
print(json.dumps({"prompt": ids, "max_tokens": 64, "ignore_eos": True, "stream": True,
                  "temperature": 0.8, "seed": i}))
PY
}
mpirun --enable-recovery -np 4 --oversubscribe "$baton" serve -m "$model" \
  --topology "$work/three.toml" --port "$port" --ctx-size 1024 --max-num-seqs 32 \
  >"$work/serve.out" 2>"$work/serve.err" &
server=$!
for _ in $(seq 120); do
  grep -q "serving" "$work/serve.err" 2>/dev/null && break
  sleep 1
done
t_submit="$(now)"
start_streams "$n" body_of
wait_streams "$n" 1  # every prompt computed: each stream has its first token
t_prefilled="$(now)"
prefill_tps="$(awk -v a="$t_submit" -v b="$t_prefilled" -v n="$n" 'BEGIN { printf "%.1f", n * 512 / (b - a) }')"
rank2=""
for p in $(pgrep -f "$baton serve"); do
  tr '\0' '\n' <"/proc/$p/environ" | grep -qx OMPI_COMM_WORLD_RANK=2 && rank2="$p"
done
t_kill="$(now)"
kill -9 "$rank2"
while ! grep -q "recovery: detected" "$work/serve.err"; do sleep 0.01; done
t_detect="$(now)"
while ! grep -q "recovery: replayed" "$work/serve.err"; do sleep 0.05; done
wait $(jobs -p | grep -v "^$server\$") 2>/dev/null || true
errors="$( (grep -l '"error"' "$work"/out*.txt || true) | wc -l)"
done_streams="$( (grep -l "data: \[DONE\]" "$work"/out*.txt || true) | wc -l)"
log="$work/serve.err"
load="$(grep -o 'loaded in [0-9.]* s' "$log" | awk '{ print $3 }')"
plan="$(grep -o 'planned in [0-9.]* s' "$log" | awk '{ print $3 }')"
switched="$(grep -o 'switched to epoch [0-9]* [0-9.]* s' "$log" | awk '{ print $5 }')"
replayed_tokens="$(grep -o '(\([0-9]*\) tokens recomputed' "$log" | tr -dc '0-9')"
replay_s="$(grep -o 'recomputed); [0-9.]* s' "$log" | awk '{ print $2 }')"
detect="$(awk -v a="$t_kill" -v b="$t_detect" 'BEGIN { printf "%.3f", b - a }')"
echo "streams $n x 512-token prompts; prefill $prefill_tps tokens/s (measured on the prompts)"
echo "detection $detect s (goal <= 1 s); plan $plan s; load $load s; switched $switched s after detection"
echo "replayed $replayed_tokens tokens; every replayed request had its next token $replay_s s after detection"
awk -v d="$detect" -v r="$replay_s" -v l="$load" -v t="$replayed_tokens" -v p="$prefill_tps" 'BEGIN {
  total = d + r; goal = l + t / p + 1
  printf "total %.2f s (kill to every next token); goal %.2f s (load %.3f + %d tokens / %.1f tok/s + 1): %.2fx the goal\n", total, goal, l, t, p, total / goal }'
echo "streams done: $done_streams of $n, with an error event: $errors"
grep "recovery:" "$log"
kill -TERM "$server" 2>/dev/null || true
wait "$server" 2>/dev/null || true
