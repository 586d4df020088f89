#!/usr/bin/env bash
# Catalog reads vs etcd 3.4 range reads, blocking-query fan-out, and 10,000
# services x 3 instances (memory and write latency). See docs/benchmarks.md.
#   ./bench/catalog.sh           BENCH_DURATION=10 BENCH_KEEP=1 BENCH_ONLY=fan_out|reads|acl BENCH_RUNS=5
. "$(dirname "$0")/cluster/common.sh"
bench_need etcd-server etcd-client wrk python3
bench_mesh_bin
# The fan-out load generator (daemon/client/examples/fan_out.rs).
if [ -z "${FAN_OUT_BIN:-}" ]; then
  (cd "$REPO_DIR" && . scripts/env.sh && cargo build -q --profile bench-build -p mesh-client --example fan_out)
  FAN_OUT_BIN="$(cd "$REPO_DIR" && . scripts/env.sh && echo "$CARGO_TARGET_DIR")/bench-build/examples/fan_out"
fi
export FAN_OUT_BIN
bench_start
ulimit -n 8192
python3 "$BENCH_DIR/cluster/catalog.py"
