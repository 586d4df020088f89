#!/usr/bin/env bash
# Ingress with TLS: mesh's ingress gateway (`mesh connect proxy -gateway
# ingress`) against HAProxy doing the same job, side by side in one run:
#
#   wrk (TLS, Host: web.example.test) -> ingress (TLS termination, routing
#   by Host) -> mTLS -> web's sidecar (the built-in proxy) -> backend
#
# HAProxy presents the gateway's own leaf from the agent (as server and as
# client certificate) and verifies the sidecar against the Connect CA's
# roots, so both rows do the same TLS work; the sidecar and backend are
# shared. Loopback only; any wrk error or non-2xx answer fails the run.
#
# Env: DURATION (10s), CONNS (64), THREADS (2), ROUNDS (3),
#      WORK (/var/tmp/mesh-bench-ingress), MESH_BIN (else built with --profile bench-build).
set -euo pipefail
cd "$(dirname "$0")/../.."

WORK=${WORK:-/var/tmp/mesh-bench-ingress}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}

if ! command -v haproxy >/dev/null || ! command -v wrk >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy wrk >/dev/null
fi
. scripts/env.sh
if [ -z "${MESH_BIN:-}" ]; then
    nice -n 10 cargo build -q --profile bench-build -p mesh
    MESH_BIN="$CARGO_TARGET_DIR/bench-build/mesh"
fi
nice -n 10 cargo build -q --profile bench-build -p mesh-proxy --example bench_sidecar
BIN="$CARGO_TARGET_DIR/bench-build/examples/bench_sidecar"

BACKEND=19080 AGENT_HTTP=19700 SIDECAR=19102 GATEWAY=19443 HAP=19444
HOST=web.example.test

rm -rf "$WORK"; mkdir -p "$WORK"
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
wait_for() { # what cmd...: at most 20 s
    local what=$1; shift
    for _ in $(seq 400); do "$@" >/dev/null 2>&1 && return 0; sleep 0.05; done
    echo "$what never became ready" >&2; exit 1
}
api() { curl -sSf -X "$1" "http://127.0.0.1:$AGENT_HTTP$2" ${3:+-d "$3"}; }

start backend "$BIN" backend "127.0.0.1:$BACKEND"
start agent "$MESH_BIN" agent -node=ingress-bench -data-dir="$WORK/data" -bind=127.0.0.1 \
    -client=127.0.0.1 -server -bootstrap-expect=1 -http-port="$AGENT_HTTP" \
    -serf-lan-port=$((AGENT_HTTP + 1)) -server-port=$((AGENT_HTTP + 2)) -dns-port=-1
wait_for "the agent's leader" bash -c "curl -sf http://127.0.0.1:$AGENT_HTTP/v1/status/leader | grep -q :"
api PUT /v1/config '{"Kind":"service-defaults","Name":"web","Protocol":"http"}' >/dev/null
api PUT /v1/agent/service/register "{\"Name\":\"web\",\"ID\":\"web\",\"Port\":$BACKEND,\"Address\":\"127.0.0.1\",\"Connect\":{\"SidecarService\":{\"Port\":$SIDECAR,\"Address\":\"127.0.0.1\"}}}" >/dev/null
api PUT /v1/config "{\"Kind\":\"ingress-gateway\",\"Name\":\"edge\",\"Listeners\":[{\"Port\":$GATEWAY,\"Protocol\":\"http\",\"TLS\":{\"Enabled\":true},\"Services\":[{\"Name\":\"web\",\"Hosts\":[\"$HOST\"]}]}]}" >/dev/null
export MESH_HTTP_ADDR="127.0.0.1:$AGENT_HTTP"
start sidecar "$MESH_BIN" connect proxy -sidecar-for web
start gateway "$MESH_BIN" connect proxy -gateway ingress -register -service edge -address 127.0.0.1
unset MESH_HTTP_ADDR
wait_for "the gateway" curl -skf -o /dev/null -H "Host: $HOST" "https://127.0.0.1:$GATEWAY/"

# HAProxy with the gateway's own leaf (it names the host) and the CA's roots.
api GET /v1/agent/connect/ca/leaf/edge | python3 -c '
import json, sys
leaf = json.load(sys.stdin)
open(sys.argv[1], "w").write(leaf["CertPEM"] + leaf["PrivateKeyPEM"])' "$WORK/edge.pem"
api GET /v1/connect/ca/roots | python3 -c '
import json, sys
open(sys.argv[1], "w").write("\n".join(r["RootCert"] for r in json.load(sys.stdin)["Roots"]))' "$WORK/ca.pem"
cat >"$WORK/haproxy.cfg" <<CFG
global
    maxconn 8000
    ssl-default-server-options ssl-min-ver TLSv1.3
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend ingress
    bind 127.0.0.1:$HAP ssl crt $WORK/edge.pem alpn http/1.1
    use_backend web if { hdr(host) -i $HOST }
backend web
    http-reuse always
    server s 127.0.0.1:$SIDECAR ssl verify required ca-file $WORK/ca.pem crt $WORK/edge.pem
CFG
start haproxy haproxy -db -f "$WORK/haproxy.cfg"
wait_for "HAProxy" curl -skf -o /dev/null -H "Host: $HOST" "https://127.0.0.1:$HAP/"

declare -A RPS P99 CPU
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
load() { # name port round [pids...]
    local name=$1 port=$2 round=$3; shift 3
    local out="$WORK/wrk-$name-$round.txt" t0 t1
    t0=$(ticks "$@")
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H "Host: $HOST" "https://127.0.0.1:$port/" >"$out"
    t1=$(ticks "$@")
    if grep -q "Non-2xx\|Socket errors" "$out"; then
        echo "error: $name had errors:" >&2; grep "Non-2xx\|Socket errors" "$out" >&2; exit 1
    fi
    local rps p99 reqs cpu
    rps=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' "$out")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
    reqs=$(awk '/requests in/ {print $1}' "$out")
    cpu=$(awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v n="$reqs" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')
    RPS[$name]="${RPS[$name]:-} $rps"; P99[$name]="${P99[$name]:-} $p99"; CPU[$name]="${CPU[$name]:-} $cpu"
    echo "round $round $name: $rps req/s, p99 $p99 ms, ingress + sidecar CPU $cpu us/request"
}
wrk -t"$THREADS" -c"$CONNS" -d2s -H "Host: $HOST" "https://127.0.0.1:$GATEWAY/" >/dev/null # warm-up
for r in $(seq "$ROUNDS"); do
    load mesh "$GATEWAY" "$r" "$PID_gateway" "$PID_sidecar"
    load haproxy "$HAP" "$r" "$PID_haproxy" "$PID_sidecar"
done
stop_all
trap - EXIT
for n in mesh haproxy; do
    RPS[$n]=$(echo "${RPS[$n]}" | median); P99[$n]=$(echo "${P99[$n]}" | median); CPU[$n]=$(echo "${CPU[$n]}" | median)
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
{
    echo "## Ingress with TLS ($(date -u +%F), $(nproc) cores, loopback, wrk -t$THREADS -c$CONNS -d$DURATION over TLS, 1 KiB responses)"
    echo
    echo "| ingress | req/s | p99 ms | CPU of ingress + sidecar, us/request |"
    echo "| --- | ---: | ---: | ---: |"
    echo "| mesh ingress gateway | ${RPS[mesh]} | ${P99[mesh]} | ${CPU[mesh]} |"
    echo "| HAProxy $(haproxy -v | awk 'NR == 1 {print $3}') | ${RPS[haproxy]} | ${P99[haproxy]} | ${CPU[haproxy]} |"
    echo
    echo "- mesh / HAProxy req/s: $(ratio "${RPS[mesh]}" "${RPS[haproxy]}") (target >= 1)"
} | tee "$WORK/results.md"
