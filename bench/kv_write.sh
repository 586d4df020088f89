#!/usr/bin/env bash
# Replicated writes: 3 mesh servers vs 3 etcd 3.4 members on loopback, wrk at
# 1, 16 and 64 connections against each leader. See docs/benchmarks.md.
#   ./bench/kv_write.sh                      # builds the bench-build agent
#   MESH_BIN=/path/to/mesh ./bench/kv_write.sh
#   BENCH_DURATION=10 BENCH_CONNS="1 16 64" BENCH_KEEP=1 (keep logs)
. "$(dirname "$0")/cluster/common.sh"
bench_need etcd-server etcd-client wrk strace python3
bench_mesh_bin
bench_start
python3 "$BENCH_DIR/cluster/kv_write.py"
