#!/usr/bin/env bash
# Installs the llama.cpp peer for bench/compare_llama_cpp.mjs: node-llama-cpp 3.21.1 from
# npm (prebuilt CPU library, no compiler) into ~/.cache/baton/peer, outside the repo.
set -euo pipefail
peer="${BATON_PEER_DIR:-$HOME/.cache/baton/peer}"
mkdir -p "$peer"
cd "$peer"
[[ -f package.json ]] || echo '{"private": true}' > package.json
npm i -E node-llama-cpp@3.21.1 --no-audit --no-fund --silent
echo "peer: node-llama-cpp installed in $peer" >&2
