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

# The mission: a pipeline of two layer-shard stages behind an OpenAI-compatible server
# (two MPI ranks when mpirun is here), a chat request from `baton client`, streamed.
port="${BATON_DEMO_PORT:-8765}"
log="$(mktemp)"
if command -v mpirun >/dev/null 2>&1; then
  launch=(env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np 2)
  how="mpirun -np 2 baton serve (one stage per rank)"
else
  launch=()
  how="baton serve --stages 2 (two stages in one process)"
fi
echo
echo "== $how on the demo model, port $port"
"${launch[@]}" "$baton" serve -m "$demo" --stages 2 --port "$port" --served-model-name demo \
  2>"$log" &
server=$!
stop_server() {
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
}
trap stop_server EXIT
for _ in $(seq 1 300); do
  if curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then cat "$log" >&2; echo "demo: the server did not start" >&2; exit 1; fi
  sleep 0.1
done
cat "$log"
prompt='Write a haiku about a relay race.'
echo
echo "== baton client --chat --stream -p \"$prompt\""
echo "   (random weights: the words are noise; the pipeline, the API and the stream are real)"
"$baton" client --url "http://127.0.0.1:$port" --chat --stream -p "$prompt" -n 32 \
  --temperature 0.7 --seed 4
echo
echo "== stopping the server"
stop_server
trap - EXIT
tail -n 1 "$log"
rm -f "$log"
