#!/usr/bin/env bash
# The README's second command (and what .ci/run calls): install what is missing, build,
# run the whole test suite. In CI (CI=true) the llama.cpp reference files in
# ../shared must be present: the golden tests run there, never skip.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [[ "${CI:-}" == "true" && ! -d "${BATON_SHARED_DIR:-$root/../shared}/golden" ]]; then
  echo "test: CI=true but ../shared/golden is missing (the golden tests must run in CI)" >&2
  exit 1
fi
"$root/scripts/build.sh"
cd "$root/build"
ctest --output-on-failure -j2 "$@"
