#!/usr/bin/env bash
# mesh.d: latency from a file's rename to the change on every node (3 servers
# and one -dev agent, 100 edits), and the cost of a no-op reload with 1,000
# services and 1,000 intentions in 100 files. Consul has no equivalent: its
# file config entries are applied once and never re-applied or deleted.
#   ./bench/reload.sh            BENCH_EDITS=100 BENCH_KEEP=1
. "$(dirname "$0")/cluster/common.sh"
bench_need python3
bench_mesh_bin
bench_start
python3 "$BENCH_DIR/cluster/reload.py"
