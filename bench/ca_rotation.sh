#!/usr/bin/env bash
# CA rotation at scale: 3 servers, 1,000 services each holding a blocking
# leaf query; time until every leaf is re-issued by the new root, and the
# leader's peak CPU. See docs/benchmarks.md.   BENCH_SERVICES=1000
. "$(dirname "$0")/cluster/common.sh"
bench_need python3
bench_mesh_bin
bench_start
ulimit -n 8192
python3 "$BENCH_DIR/cluster/ca_rotation.py"
