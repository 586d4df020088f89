#!/usr/bin/env bash
# Catalog reads vs etcd 3.4 range reads, blocking-query fan-out, and 10,000
# services x 3 instances (memory and write latency). See docs/benchmarks.md.
#   ./bench/catalog.sh           BENCH_DURATION=10 BENCH_KEEP=1
. "$(dirname "$0")/cluster/common.sh"
bench_need etcd-server etcd-client wrk python3
bench_mesh_bin
bench_start
ulimit -n 8192
python3 "$BENCH_DIR/cluster/catalog.py"
