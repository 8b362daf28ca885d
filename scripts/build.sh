#!/usr/bin/env bash
# Installs what is missing (scripts/setup.sh) and builds baton into build/ with -j2.
# Extra arguments go to CMake's configure step (e.g. -DBATON_CUDA=OFF).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh"
cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$root/build" -j2
