#!/usr/bin/env bash
# mesh's DNS interface vs NSD 4.6, side by side in one run (docs/benchmarks.md, "DNS").
#
#   bench/dns/run.sh [seconds per run, default 10] [rounds, default 3]
#
# mesh is the shipped binary: `mesh agent` as a one-server cluster (Raft on
# RocksDB), its catalog written through the HTTP API (bench/dns/catalog.py)
# and queried on its DNS port. NSD serves a zone written from what that
# agent's health API answers, so both hold the same records:
# web.service.consul with 10 A records and svc-0000..svc-0999.service.consul
# with one each. dnsperf asks for them alternately (half web, half spread
# over the 1,000 names) at the same concurrency. Each target gets `rounds`
# runs for QPS, interleaved (median reported, every run printed), and one
# more run with per-query output for latency percentiles. Targets:
#   nsd           NSD 4.6.1, rrl-ratelimit 0, its default server-count 1
#   mesh          mesh agent, dns_config.udp_answer_limit 10 (NSD's 10 records)
#   mesh-writes   the same agent while catalog.py writes 100 check updates/s
#                 through its HTTP API (each one a Raft write)
#   mesh-default  a second mesh agent with DNS defaults: 3 records + TC for web
# Knobs: MESH_BIN=/path/to/mesh (else cargo builds it with --profile bench-build).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_RUN="${1:-10}"
ROUNDS="${2:-3}"
CLIENTS=4
OUTSTANDING=100
export PYTHONDONTWRITEBYTECODE=1

bench/dns/setup.sh
if [ -z "${MESH_BIN:-}" ]; then
  scripts/setup.sh
  . scripts/env.sh
  cargo build -q -p mesh --profile bench-build
  MESH_BIN="$CARGO_TARGET_DIR/bench-build/mesh"
fi

WORK="$(mktemp -d /tmp/mesh-dns-bench.XXXXXX)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# Ports: the first free block of four from 18600.
port_free() { ! ss -Hlnu "sport = :$1" | grep -q . && ! ss -Hlnt "sport = :$1" | grep -q .; }
BASE=18600
while ! (port_free $BASE && port_free $((BASE + 1)) && port_free $((BASE + 2)) && port_free $((BASE + 3))); do
  BASE=$((BASE + 10))
done
NSD_PORT=$BASE MESH_PORT=$((BASE + 1)) DEFAULT_PORT=$((BASE + 3))

# agent NAME DNS_PORT [config file]: a one-server mesh agent; sets
# HTTP_OF[NAME] and PID_OF[NAME] once it is ready and has a leader.
declare -A HTTP_OF PID_OF
agent() {
  local name=$1 port=$2 conf=${3:-} ready="" leader=""
  mkdir -p "$WORK/$name"
  "$MESH_BIN" agent -node="$name" -data-dir="$WORK/$name" -bind=127.0.0.1 -client=127.0.0.1 \
    -server -bootstrap-expect=1 -http-port=0 -serf-lan-port=0 -server-port=0 -grpc-port=-1 \
    -dns-port="$port" ${conf:+-config-file="$conf"} >"$WORK/$name.out" 2>"$WORK/$name.log" &
  PID_OF[$name]=$!
  PIDS+=($!)
  for _ in $(seq 300); do
    ready=$(grep -m1 '^==> mesh agent ready:' "$WORK/$name.out" || true)
    [ -n "$ready" ] && break
    sleep 0.1
  done
  [ -n "$ready" ] || { echo "mesh agent $name did not come up:" >&2; tail -20 "$WORK/$name.log" >&2; exit 1; }
  HTTP_OF[$name]=$(tr ' ' '\n' <<<"$ready" | sed -n 's/^http=//p')
  # Registration needs a leader (catalog.py retries nothing).
  for _ in $(seq 300); do
    leader=$(curl -fsS "http://${HTTP_OF[$name]}/v1/status/leader" 2>/dev/null || true)
    [ -n "$leader" ] && [ "$leader" != '""' ] && return 0
    sleep 0.1
  done
  echo "mesh agent $name elected no leader" >&2
  exit 1
}
printf 'dns_config {\n  udp_answer_limit = 10\n}\n' >"$WORK/limit10.hcl"
agent mesh "$MESH_PORT" "$WORK/limit10.hcl"
agent mesh-default "$DEFAULT_PORT"
python3 bench/dns/catalog.py populate "${HTTP_OF[mesh]}" "$WORK/consul.zone"
python3 bench/dns/catalog.py populate "${HTTP_OF[mesh-default]}" "$WORK/default.zone"
cmp -s "$WORK/consul.zone" "$WORK/default.zone" || { echo "the two agents' catalogs differ" >&2; exit 1; }
for i in $(seq 0 999); do
  printf 'web.service.consul A\nsvc-%04d.service.consul A\n' "$i"
done > "$WORK/queries.txt"

cat > "$WORK/nsd.conf" <<EOF
server:
    ip-address: 127.0.0.1
    port: $NSD_PORT
    server-count: 1
    username: ""
    chroot: ""
    zonesdir: "$WORK"
    database: ""
    zonelistfile: "$WORK/zone.list"
    pidfile: "$WORK/nsd.pid"
    xfrdfile: "$WORK/xfrd.state"
    xfrdir: "$WORK"
    logfile: "$WORK/nsd.log"
    verbosity: 0
    rrl-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: "consul."
    zonefile: "consul.zone"
EOF
nsd -d -c "$WORK/nsd.conf" >"$WORK/nsd.out" 2>&1 &
PIDS+=($!)

wait_ready() { # port: until dig gets an answer, at most 10 s
  for _ in $(seq 50); do
    if dig @127.0.0.1 -p "$1" +time=1 +tries=1 +short web.service.consul A | grep -q .; then return 0; fi
    sleep 0.2
  done
  echo "server on port $1 did not come up" >&2
  exit 1
}

# One dnsperf run: prints "qps lost sent".
perf_run() {
  dnsperf -s 127.0.0.1 -p "$1" -d "$WORK/queries.txt" -l "$SECONDS_PER_RUN" \
    -c "$CLIENTS" -q "$OUTSTANDING" >"$WORK/run.txt" 2>&1
  awk '/Queries sent:/ {s=$3} /Queries lost:/ {l=$3} /Queries per second:/ {q=$4}
       END {printf "%d %d %d\n", q, l, s}' "$WORK/run.txt"
}

# One verbose run: prints "p50_ms p99_ms qps lost".
latency_run() {
  dnsperf -s 127.0.0.1 -p "$1" -d "$WORK/queries.txt" -l "$SECONDS_PER_RUN" \
    -c "$CLIENTS" -q "$OUTSTANDING" -v >"$WORK/verbose.txt" 2>&1
  local qps lost
  qps=$(awk '/Queries per second:/ {printf "%d", $4}' "$WORK/verbose.txt")
  lost=$(awk '/Queries lost:/ {print $3}' "$WORK/verbose.txt")
  grep '^>' "$WORK/verbose.txt" | awk '{print $NF}' | sort -n |
    awk -v q="$qps" -v l="$lost" '{a[NR]=$1}
      END {printf "%.3f %.3f %s %s\n", a[int(NR*0.50)]*1000, a[int(NR*0.99)]*1000, q, l}'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A QPS LOST RUNS P50 P99 PORT
PORT[nsd]=$NSD_PORT PORT[mesh]=$MESH_PORT PORT[mesh-writes]=$MESH_PORT PORT[mesh-default]=$DEFAULT_PORT
TARGETS=(nsd mesh mesh-writes mesh-default)
WRITES=0
# The writer runs only while mesh-writes is measured, so its writes do
# not load the machine during the other targets' runs.
start_writes() {
  python3 bench/dns/catalog.py writes "${HTTP_OF[mesh]}" 100 >>"$WORK/writes.out" 2>"$WORK/writes.err" &
  WRITES_PID=$!
  PIDS+=("$WRITES_PID")
}
stop_writes() {
  kill -TERM "$WRITES_PID"
  if ! wait "$WRITES_PID"; then
    echo "the catalog writer failed:" >&2
    cat "$WORK/writes.err" >&2
    exit 1
  fi
  WRITES=$(awk '/catalog writes/ {n += $1} END {print n + 0}' "$WORK/writes.out")
}
one() { # target -> runs fn on its port
  local t=$1 fn=$2
  [ "$t" = mesh-writes ] && start_writes
  $fn "${PORT[$t]}"
  [ "$t" = mesh-writes ] && stop_writes
  return 0
}

wait_ready "$NSD_PORT"
wait_ready "$MESH_PORT"
wait_ready "$DEFAULT_PORT"
# NSD and mesh give the same web records before anything is timed.
for port in "$NSD_PORT" "$MESH_PORT"; do
  dig @127.0.0.1 -p "$port" +short +time=2 +tries=1 web.service.consul A | sort >"$WORK/web.$port"
done
cmp -s "$WORK/web.$NSD_PORT" "$WORK/web.$MESH_PORT" || {
  echo "NSD and mesh answer web.service.consul differently:" >&2
  diff "$WORK/web.$NSD_PORT" "$WORK/web.$MESH_PORT" >&2 || true
  exit 1
}
echo "dnsperf -c $CLIENTS -q $OUTSTANDING -l $SECONDS_PER_RUN, $ROUNDS rounds interleaved; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
# Rounds interleave the targets, so load from elsewhere on the machine
# falls on all of them alike.
for t in "${TARGETS[@]}"; do RUNS[$t]=""; LOST[$t]=0; done
for round in $(seq "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do
    one "$t" perf_run >"$WORK/result" # not in a subshell: start/stop_writes keep state
    read -r q l _ <"$WORK/result"
    RUNS[$t]+="$q "
    LOST[$t]=$((LOST[$t] + l))
    echo "round $round $t: $q QPS, $l lost" >&2
  done
done
for t in "${TARGETS[@]}"; do
  QPS[$t]=$(tr ' ' '\n' <<<"${RUNS[$t]}" | grep . | median)
  one "$t" latency_run >"$WORK/result"
  read -r P50[$t] P99[$t] _ <"$WORK/result"
  echo "$t: p50 ${P50[$t]} ms, p99 ${P99[$t]} ms" >&2
done

echo
echo "| target | QPS (median of $ROUNDS × ${SECONDS_PER_RUN} s) | runs | lost | p50 ms | p99 ms | vs NSD |"
echo "| --- | ---: | --- | ---: | ---: | ---: | ---: |"
for t in nsd mesh mesh-writes mesh-default; do
  ratio=$(awk -v a="${QPS[$t]}" -v b="${QPS[nsd]}" 'BEGIN {printf "%.2f", a / b}')
  echo "| $t | ${QPS[$t]} | ${RUNS[$t]% } | ${LOST[$t]} | ${P50[$t]} | ${P99[$t]} | ${ratio}× |"
done
echo
echo "mesh-writes: $WRITES catalog writes through the HTTP API while serving; latency runs use dnsperf -v (per-query output), which costs the client some throughput."
echo "mesh agent RSS after the run: $(awk '/VmRSS/ {print $2 " kB"}' "/proc/${PID_OF[mesh]}/status")"
# A benchmark that lost queries measured something else: fail it.
for t in "${TARGETS[@]}"; do
  if [ "${LOST[$t]}" != 0 ]; then
    echo "$t lost ${LOST[$t]} queries" >&2
    exit 1
  fi
done
