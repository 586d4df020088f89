#!/usr/bin/env bash
# Envoy start to first request served through a `mesh connect envoy`
# sidecar on a cold agent cache, beside the same Envoy on a static
# bootstrap (the floor). See docs/benchmarks.md.
#   ./bench/envoy_start.sh     BENCH_ROUNDS=10
. "$(dirname "$0")/cluster/common.sh"
bench_need python3
bench_mesh_bin
ENVOY_BIN="$(bash "$REPO_DIR/tests/compat/envoy.sh" | tail -1)"
export ENVOY_BIN
bench_start
python3 "$BENCH_DIR/cluster/envoy_start.py"
