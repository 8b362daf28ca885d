#!/bin/bash
# Test hosts as network namespaces: `netns.sh up N` makes bt-h1..bt-hN, each with its own
# veth into the bridge bt-br0 (10.77.0.1) at 10.77.0.1N; `netns.sh down` removes them.
# Needs root and iproute2; the multihost test skips when `up` fails.
set -euo pipefail
cmd=${1:-up}
n=${2:-2}
case "$cmd" in
  up)
    "$0" down >/dev/null 2>&1 || true
    ip link add bt-br0 type bridge
    ip addr add 10.77.0.1/24 dev bt-br0
    ip link set bt-br0 up
    for i in $(seq 1 "$n"); do
      ns=bt-h$i
      ip netns add "$ns"
      ip link add "bt-v$i" type veth peer name eth0 netns "$ns"
      ip link set "bt-v$i" master bt-br0 up
      ip -n "$ns" addr add "10.77.0.1$i/24" dev eth0
      ip -n "$ns" link set eth0 up
      ip -n "$ns" link set lo up
      ip -n "$ns" route add default via 10.77.0.1
    done
    ;;
  down)
    for ns in $(ip netns list | awk '/^bt-h[0-9]/ {print $1}'); do
      ip netns del "$ns"
    done
    ip link del bt-br0 2>/dev/null || true
    ;;
  *)
    echo "usage: $0 up [N] | down" >&2
    exit 2
    ;;
esac
