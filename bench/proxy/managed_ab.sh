#!/usr/bin/env bash
# A/B of managed sidecars (`connect { managed_sidecars = true }`) between two
# mesh binaries: each runs a -dev agent whose in-process sidecars carry
# wrk -> web's upstream listener -> mTLS -> db's sidecar -> backend (1 KiB).
# Interleaved rounds; prints req/s, p99 and the agent's CPU per request.
#
#   bash bench/proxy/managed_ab.sh OLD_MESH_BIN NEW_MESH_BIN
#
# Env: DURATION (5s), ROUNDS (4), WORK (/var/tmp/mesh-bench-managed),
#      CARGO_TARGET_DIR (scripts/env.sh). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -eq 2 ] || { echo "usage: $0 OLD_MESH_BIN NEW_MESH_BIN" >&2; exit 2; }
OLD=$(realpath "$1") NEW=$(realpath "$2")
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-4}
WORK=${WORK:-/var/tmp/mesh-bench-managed}
. scripts/env.sh
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
nice -n 10 cargo build -q --profile bench-build -p mesh-proxy --example bench_sidecar
BIN="$CARGO_TARGET_DIR/bench-build/examples/bench_sidecar"

rm -rf "$WORK"; mkdir -p "$WORK"
PIDS=()
start() { setsid "$@" >"$WORK/$(basename "$1").$$.$RANDOM.log" 2>&1 & PIDS+=($!); }
stop_all() { for p in "${PIDS[@]}"; do kill -- -"$p" 2>/dev/null || true; done; for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done; }
trap stop_all EXIT
wait_for() { # what cmd...
    local what=$1; shift
    for _ in $(seq 200); do "$@" >/dev/null 2>&1 && return 0; sleep 0.05; done
    echo "$what never became ready" >&2; return 1
}
printf 'connect {\n  managed_sidecars = true\n}\n' >"$WORK/managed.hcl"
start "$BIN" backend 127.0.0.1:18080
declare -A AGENT UPSTREAM
i=0
for v in old new; do
    i=$((i + 1)); base=$((19000 + i * 100)); bin=$OLD
    [ "$v" = new ] && bin=$NEW
    start "$bin" agent -dev -data-dir "$WORK/data-$v" -http-port $base -dns-port -1 -grpc-port -1 \
        -serf-lan-port $((base + 1)) -server-port $((base + 2)) -config-file "$WORK/managed.hcl"
    AGENT[$v]=$!
    wait_for "agent $v" bash -c "curl -sf http://127.0.0.1:$base/v1/status/leader | grep -q :"
    curl -sf -X PUT "http://127.0.0.1:$base/v1/agent/service/register" -d "{\"Name\":\"db\",\"ID\":\"db\",\"Port\":18080,\"Address\":\"127.0.0.1\",\"Connect\":{\"SidecarService\":{\"Port\":$((base + 10)),\"Address\":\"127.0.0.1\"}}}"
    curl -sf -X PUT "http://127.0.0.1:$base/v1/agent/service/register" -d "{\"Name\":\"web\",\"ID\":\"web\",\"Port\":1,\"Connect\":{\"SidecarService\":{\"Port\":$((base + 11)),\"Address\":\"127.0.0.1\",\"Proxy\":{\"Upstreams\":[{\"DestinationName\":\"db\",\"LocalBindPort\":$((base + 20))}]}}}}"
    UPSTREAM[$v]=$((base + 20))
    wait_for "traffic through $v's sidecars" curl -sf -o /dev/null "http://127.0.0.1:${UPSTREAM[$v]}/"
done
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
for v in old new; do wrk -t2 -c64 -d1s "http://127.0.0.1:${UPSTREAM[$v]}/" >/dev/null; done
for r in $(seq "$ROUNDS"); do
    for v in old new; do
        t0=$(ticks "${AGENT[$v]}")
        wrk -t2 -c64 -d"$DURATION" --latency "http://127.0.0.1:${UPSTREAM[$v]}/" >"$WORK/wrk.txt"
        t1=$(ticks "${AGENT[$v]}")
        reqs=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
        echo "round $r $v: $(awk '/^Requests\/sec/ {printf "%.0f", $2}' "$WORK/wrk.txt") req/s," \
            "p99 $(awk '$1 == "99%" {print $2}' "$WORK/wrk.txt")," \
            "agent CPU $(awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v n="$reqs" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }') us/request"
    done
done
