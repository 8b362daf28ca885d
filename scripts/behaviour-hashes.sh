#!/usr/bin/env bash
# Prints one line per observable output of baton, with its SHA-256: the next-token
# logits of the golden prompts (`baton logits`), the tokens of greedy and seeded
# generation at 1 and 2 stages and over `mpirun -np 2`, and the token streams of
# `baton bench batch`. Run it before and after a change that must not change
# behaviour (a refactor) and diff the two outputs.
#
#   scripts/behaviour-hashes.sh [BATON] [SHARED_DIR] > before.txt
#
# BATON defaults to build/bin/baton; SHARED_DIR to ../shared (its golden prompts and
# tiny models; without it only the built-in demo model is used).
set -euo pipefail
baton=${1:-build/bin/baton}
shared=${2:-../shared}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

line() {  # line NAME FILE
  printf '%-44s %s\n' "$1" "$(sha256sum < "$2" | cut -c1-16)"
}

models=()
if [[ -d "$shared/models" ]]; then
  for m in tiny-q8_0 tiny-q4_0 tiny-q4_k_m; do
    models+=("$shared/models/$m.gguf")
  done
else
  models+=("")  # the demo model
fi
prompts=()
if [[ -d "$shared/golden/prompts" ]]; then
  prompts=("$shared/golden/prompts"/*.txt)
else
  printf 'The capital of France is' > "$work/p.txt"
  prompts=("$work/p.txt")
fi
printf 'Once upon a time\nThe capital of France is\nHello\n' > "$work/batch.txt"

for m in "${models[@]}"; do
  name=$(basename "${m:-demo}" .gguf)
  margs=(); [[ -n "$m" ]] && margs=(-m "$m")
  for p in "${prompts[@]}"; do
    for st in 1 2; do
      "$baton" logits "${margs[@]}" -q -t 2 --stages "$st" -f "$p" -o "$work/l.bin" >/dev/null
      line "logits $name $(basename "$p" .txt) stages=$st" "$work/l.bin"
    done
  done
  for st in 1 2; do
    "$baton" run "${margs[@]}" -q -t 2 --stages "$st" -p "The capital of France is" \
      -n 24 --temp 0 --no-stats > "$work/o.txt" 2>/dev/null
    line "run greedy $name stages=$st" "$work/o.txt"
    "$baton" run "${margs[@]}" -q -t 2 --stages "$st" -p "Once upon a time" \
      -n 24 --temp 0.9 --seed 7 --no-stats > "$work/o.txt" 2>/dev/null
    line "run seeded $name stages=$st" "$work/o.txt"
    "$baton" run "${margs[@]}" -q -t 2 --stages "$st" --prompt-file "$work/batch.txt" \
      -n 16 --temp 0.7 --seed 3 --json --no-stats > "$work/o.txt" 2>/dev/null
    line "run batch json $name stages=$st" "$work/o.txt"
  done
  mpirun --oversubscribe -np 2 "$baton" run "${margs[@]}" -q -t 1 -p "Once upon a time" \
    -n 24 --temp 0.9 --seed 7 --no-stats > "$work/o.txt" 2>/dev/null
  line "run seeded $name mpirun np=2" "$work/o.txt"
  mpirun --oversubscribe -np 2 "$baton" run "${margs[@]}" -q -t 1 --prompt-file "$work/batch.txt" \
    -n 16 --temp 0 --json --no-stats > "$work/o.txt" 2>/dev/null
  line "run batch json $name mpirun np=2" "$work/o.txt"
  "$baton" bench batch "${margs[@]}" -q -t 2 --streams 1 4 -r 2 -p 16 -n 16 --no-overhead \
    --json 2>/dev/null | python3 -c 'import json,sys; print(json.dumps([b["token_digests"] for b in json.load(sys.stdin)["batch"]]))' > "$work/o.txt"
  line "bench batch streams $name" "$work/o.txt"
  "$baton" bench batch "${margs[@]}" -q -t 2 --stages 2 --streams 4 -r 1 -p 16 -n 16 --no-overhead \
    --json 2>/dev/null | python3 -c 'import json,sys; print(json.dumps([b["token_digests"] for b in json.load(sys.stdin)["batch"]]))' > "$work/o.txt"
  line "bench batch streams $name stages=2" "$work/o.txt"
done
