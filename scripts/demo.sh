#!/usr/bin/env bash
# The README's first command: install what is missing, build, make the demo model
# (random weights, the real Llama 3 tokenizer) and run baton on it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/build.sh"
baton="$root/build/bin/baton"
demo="${BATON_DEMO_MODEL:-${BATON_CACHE:-$HOME/.cache/baton}/demo.gguf}"
if [[ ! -s "$demo" ]]; then
  "$baton" mkmodel --preset demo -o "$demo"
fi

echo "== baton info $demo"
"$baton" info "$demo"

text='Hello from baton! Layer shards pass activations like a relay baton. 🦙'
echo
echo "== baton tokenize: \"$text\""
ids="$(printf '%s' "$text" | "$baton" tokenize -m "$demo")"
echo "ids:     $ids"
back="$(printf '%s' "$ids" | "$baton" tokenize -m "$demo" --decode)"
echo "decoded: $back"
[[ "$back" == "$text" ]] || { echo "demo: round trip FAILED" >&2; exit 1; }
echo "round trip ok"

prompt='The capital of France is'
echo
echo "== baton run --stages 2 -p \"$prompt\": two layer-shard actors, a router and an admission"
echo "   actor serve the prompt (random weights: the words are noise, the pipeline is real)"
"$baton" run -m "$demo" -p "$prompt" -n 24 --temp 0.7 --seed 4 --stages 2
