#!/usr/bin/env bash
# Telemetry: scrape time of /v1/agent/metrics (Prometheus text and JSON)
# with 10,000 services registered, and KV write throughput with telemetry
# on against the same binary with MESH_TELEMETRY=off, in one run.
# See docs/benchmarks.md.
#   ./bench/telemetry.sh          BENCH_DURATION=10 BENCH_ROUNDS=3 BENCH_SERVICES=10000
. "$(dirname "$0")/cluster/common.sh"
bench_need wrk python3
bench_mesh_bin
bench_start
python3 "$BENCH_DIR/cluster/telemetry.py"
