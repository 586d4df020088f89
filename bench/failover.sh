#!/usr/bin/env bash
# Failover: kill -9 the leader of a 3-server mesh cluster and time the first
# acknowledged write through a survivor; 5 runs, the killed server restarted
# on its data dir and ports in between. See docs/benchmarks.md.
#   ./bench/failover.sh        MESH_BIN=... BENCH_RUNS=5 BENCH_KEEP=1
. "$(dirname "$0")/cluster/common.sh"
bench_need python3
bench_mesh_bin
bench_start
python3 "$BENCH_DIR/cluster/failover.py"
