#!/usr/bin/env bash
# Footprint: idle server RSS in a 3-server cluster (etcd 3.4 beside it for
# context), idle `-dev` RSS, and `mesh agent -dev` time to ready (median of
# 10). See docs/benchmarks.md.
#   ./bench/footprint.sh        MESH_BIN=... BENCH_RUNS=10 BENCH_KEEP=1
. "$(dirname "$0")/cluster/common.sh"
bench_need etcd-server etcd-client python3
bench_mesh_bin
bench_start
python3 "$BENCH_DIR/cluster/footprint.py"
