# Shared by the benchmarks that change a serving pipeline under load (reshard_pause.sh,
# recovery.sh); sourced, not run. Sets `baton` and `model` (the Llama-3.2-1B shape in
# Q4_0, quantized from Q8_0 or made when missing) and defines:
#   stage RANK FIRST LAST   a [[stage]] table with PER_LAYER_MIB of KV per layer
#   metric NAME             the value of a /metrics line of the server on $port
#   start_streams N BODY    N streaming requests (BODY I prints request I's JSON),
#                           answers in $work/outI.txt
#   wait_streams N K        until each of the N streams has sent K events
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
baton="$root/build/bin/baton"
models="${BATON_MODELS:-$HOME/.cache/baton/models}"
model="$models/llama3.2-1b-shape-q4_0.gguf"
if [[ ! -s "$model" ]]; then
  if [[ -s "$models/llama3.2-1b-shape-q8_0.gguf" ]]; then
    "$baton" quantize "$models/llama3.2-1b-shape-q8_0.gguf" "$model" q4_0
  else
    "$root/bench/make_models.sh"
  fi
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

stage() {
  printf '[[stage]]\nrank = %s\nlayers = "%s-%s"\nkv_cache_memory = "%sMiB"\n' \
    "$1" "$2" "$3" $(( ($3 - $2 + 1) * PER_LAYER_MIB ))
}

metric() {
  curl -s "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}

start_streams() {
  local i
  for i in $(seq "$1"); do
    "$2" "$i" >"$work/body$i.json"
    curl -s -N "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' \
      -d @"$work/body$i.json" >"$work/out$i.txt" &
  done
}

wait_streams() {
  local i ready
  while true; do
    ready=0
    for i in $(seq "$1"); do
      [[ "$(grep -c '^data: {' "$work/out$i.txt" 2>/dev/null)" -ge "$2" ]] && ready=$((ready + 1))
    done
    [[ "$ready" -eq "$1" ]] && break
    sleep 0.2
  done
}
