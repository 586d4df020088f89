#!/usr/bin/env bash
# ?filter= on a health read over 1,000 instances against the same read
# unfiltered, one run. See docs/benchmarks.md.
#   ./bench/filter_read.sh          BENCH_DURATION=10 BENCH_ROUNDS=3
. "$(dirname "$0")/cluster/common.sh"
bench_need wrk python3
bench_mesh_bin
bench_start
python3 "$BENCH_DIR/cluster/filter_read.py"
