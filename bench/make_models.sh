#!/usr/bin/env bash
# The benchmark models: the Llama-3.2-1B shape (n_embd 2048, 16 layers, 32 heads, 8 KV
# heads, n_ff 8192, tied, vocab 128256) with random weights, in F16, Q8_0, Q4_0, Q4_K_M,
# made with baton mkmodel + baton quantize into ~/.cache/baton/models (about 5.3 GB).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
baton="$root/build/bin/baton"
dir="${BATON_MODELS:-$HOME/.cache/baton/models}"
mkdir -p "$dir"
f16="$dir/llama3.2-1b-shape-f16.gguf"
[[ -s "$f16" ]] || "$baton" mkmodel --preset llama3.2-1b --type f16 -o "$f16"
for t in q8_0 q4_0 q4_k_m; do
  out="$dir/llama3.2-1b-shape-$t.gguf"
  [[ -s "$out" ]] || "$baton" quantize "$f16" "$out" "$t"
done
ls -la "$dir"
