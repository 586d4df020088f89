#!/usr/bin/env bash
# Discovery-chain recompile and push: 1,000 proxies of 100 http services,
# each watching its snapshot by blocking query on one server; one
# service-router written per round for an upstream service. Time until
# every proxy calling that service has the new chain (p50/p99), and the
# server's CPU per change. See docs/benchmarks.md.
#   ./bench/chain_push.sh     BENCH_RUNS=2 BENCH_PROXIES=1000 BENCH_SERVICES=100 BENCH_ROUNDS=5
. "$(dirname "$0")/cluster/common.sh"
bench_need python3
bench_mesh_bin
. "$REPO_DIR/scripts/env.sh"
(cd "$REPO_DIR" && cargo build -q --profile bench-build -p mesh-client --example snapshot_fan_out)
export MESH_BIN SNAPSHOT_FAN_OUT_BIN="$CARGO_TARGET_DIR/bench-build/examples/snapshot_fan_out"
bench_start
ulimit -n 8192
python3 "$BENCH_DIR/cluster/chain_push.py"
