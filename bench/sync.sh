#!/usr/bin/env bash
# mesh sync: catalog change → terraform apply started (buffer off and
# CTS's default 5 s buffer), 1,000 registrations in one second → one run,
# and 100 idle tasks' CPU and RSS. See docs/benchmarks.md.
#   ./bench/sync.sh           BENCH_SAMPLES=20 BENCH_BUFFERED_SAMPLES=5 BENCH_IDLE_TASKS=100
. "$(dirname "$0")/cluster/common.sh"
bench_need python3
command -v terraform >/dev/null || { echo "bench: terraform is not on PATH" >&2; exit 1; }
bench_mesh_bin
bench_start
python3 "$BENCH_DIR/cluster/sync_bench.py"
