#!/usr/bin/env bash
# Gossip convergence: 32 mesh client agents vs 32 Serf agents (built from
# Debian's Go sources) on loopback: time until all know a killed member
# failed, and until all know a new member. See docs/benchmarks.md.
#   ./bench/gossip.sh     MESH_BIN=... SERF_BIN=... BENCH_MEMBERS=32 BENCH_ROUNDS=7 BENCH_KEEP=1
. "$(dirname "$0")/cluster/common.sh"
bench_need golang-go golang-github-hashicorp-serf-dev python3
bench_mesh_bin
bench_start
if [ -z "${SERF_BIN:-}" ]; then
  SERF_BIN="$BENCH_WORK/serf"
  echo "bench: building serf from /usr/share/gocode" >&2
  GOPATH=/usr/share/gocode GO111MODULE=off \
    go build -o "$SERF_BIN" github.com/hashicorp/serf/cmd/serf
fi
export SERF_BIN
serf_version="$("$SERF_BIN" version)"
echo "bench: serf ${serf_version%%$'\n'*}" >&2
python3 "$BENCH_DIR/cluster/gossip.py"
