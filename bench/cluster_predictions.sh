#!/usr/bin/env bash
# Predictions for clusters this machine is not (issue 17's "use it"): Llama-3-8B, -70B and
# Llama-3.1-405B shapes in Q4_K_M and F16 on 1 host of 8 H100 SXM (NVLink) and on 2, 4 and
# 8 such hosts linked at 100 or 400 Gbit/s, one pipeline stage per GPU, 1, 64 and 256
# streams of 128-token prompts and 128 generated tokens. For each: the planner's split with
# its default micro-batches, and the best split and micro-batch count --search finds
# against an even split. GPU speeds are spec-sheet estimates (runtime/sim/device_specs.cpp
# says which shares of peak); no file is read or written for the models (--shape).
# Prints a Markdown table; the cluster files it writes stay in $work.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
baton="$root/build/bin/baton"
work="${WORK:-$root/build/cluster-predictions}"
mkdir -p "$work"
streams="${STREAMS:-1,64,256}"

cluster() {  # HOSTS GBIT
  local f="$work/h100x8-$1-$2g.toml"
  cat > "$f" <<TOML
[[host]]
name = "h100"
count = $1
gpus = 8
gpu = "h100-sxm"

[links]
within_host = { latency = "10us", bandwidth = "150GB/s" }     # NVLink through NCCL send/recv
between_hosts = { latency = "15us", bandwidth = "${2}Gbit/s" } # one NIC per host, RDMA
control_within_host = { latency = "30us", bandwidth = "10GB/s" }   # CAF over loopback TCP
control_between_hosts = { latency = "60us", bandwidth = "10GB/s" }
TOML
  echo "$f"
}

echo "| model | type | hosts | link | GPUs | streams | output tok/s (planner split) | TPOT ms | TTFT ms | best split's output tok/s | its micro-batches | vs even split (default micro-batches) | vs even split (same micro-batches) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for shape in llama3-8b llama3-70b llama3.1-405b; do
  for type in q4_k_m f16; do
    for setup in "1 400" "2 100" "2 400" "4 100" "4 400" "8 100" "8 400"; do
      set -- $setup
      hosts=$1
      gbit=$2
      c="$(cluster "$hosts" "$gbit")"
      pp=$((hosts * 8))
      link="${gbit} Gbit/s"
      [[ $hosts == 1 ]] && link="NVLink only"
      plan="$("$baton" plan --pp "$pp" --cluster "$c" --shape "$shape" --type "$type" --simulate \
              --streams "$streams" -p 128 -n 128 --json 2>&1)" || {
        echo "| $shape | ${type^^} | $hosts | $link | $pp | - | does not fit: ${plan#baton: } | | | | | | |"
        continue
      }
      search="$("$baton" plan --pp "$pp" --cluster "$c" --shape "$shape" --type "$type" --search \
                --streams "$streams" -p 128 -n 128 --json)"
      python3 - "$plan" "$search" "$shape" "$type" "$hosts" "$link" "$pp" <<'PY'
import json, sys
plan, search = json.loads(sys.argv[1]), json.loads(sys.argv[2])
shape, typ, hosts, link, pp = sys.argv[3:8]
best = search["search"][0]
even = search.get("even_split_output_tokens_per_s")
same = search.get("even_split_same_micro_batches_output_tokens_per_s")
for row, brow in zip(plan["simulated"], best["simulated"]):
    n = row["streams"]
    vs, vs_same = "", ""
    if n == search["ranked_at_streams"] and even:
        vs = f'{brow["output_tokens_per_s"] / even:.2f}x'
    if n == search["ranked_at_streams"] and same:
        vs_same = f'{brow["output_tokens_per_s"] / same:.2f}x'
    print(f'| {shape} | {typ.upper()} | {hosts} | {link} | {pp} | {n} | {row["output_tokens_per_s"]:.0f} | '
          f'{row["tpot_mean_s"]*1e3:.1f} | {row["ttft_mean_s"]*1e3:.0f} | {brow["output_tokens_per_s"]:.0f} | '
          f'{best["micro_batches"]} | {vs} | {vs_same} |')
PY
    done
  done
done

# Pipeline scaling on one host of 8 H200 (TensorRT-LLM publishes PP1 -> PP8 for 70B):
# Llama-3-70B Q4_K_M, 2048 streams of 128 + 128 tokens, max_num_seqs 2048, the best
# micro-batch count --search finds for each depth.
h200="$work/h200x8.toml"
cat > "$h200" <<TOML
[[host]]
name = "h200"
gpus = 8
gpu = "h200"

[links]
within_host = { latency = "10us", bandwidth = "150GB/s" }
TOML
echo
echo "| PP | micro-batches | output tok/s | decode tok/s | TTFT mean s | TPOT ms | preemptions | vs PP1 |"
echo "|---|---|---|---|---|---|---|---|"
base=""
for pp in 1 2 4 8; do
  out="$("$baton" plan --pp "$pp" --cluster "$h200" --shape llama3-70b --type q4_k_m --search \
          --max-num-seqs 2048 --streams 2048 -p 128 -n 128 --json)"
  python3 - "$out" "$pp" "${base:-0}" <<'PY'
import json, sys
j, pp, base = json.loads(sys.argv[1]), sys.argv[2], float(sys.argv[3])
b = j["search"][0]; r = b["simulated"][0]
vs = f'{r["output_tokens_per_s"] / base:.2f}x' if base else "1.00x"
print(f'| {pp} | {b["micro_batches"]} | {r["output_tokens_per_s"]:.0f} | {r["decode_tokens_per_s"]:.0f} | '
      f'{r["ttft_mean_s"]:.1f} | {r["tpot_mean_s"]*1e3:.0f} | {r["preemptions"]} | {vs} |')
PY
  if [[ -z "$base" ]]; then
    base="$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['search'][0]['simulated'][0]['output_tokens_per_s'])" "$out")"
  fi
done
