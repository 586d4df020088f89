#!/usr/bin/env bash
# ADS push fan-out: 1,000 ADS streams (delta, then state of the world) for
# 1,000 proxies of 100 services on one server; one endpoint added per
# round; time until every stream calling that service has it, server CPU
# per change, and server RSS per idle stream. See docs/benchmarks.md.
#   ./bench/xds_fan_out.sh     BENCH_RUNS=2 BENCH_PROXIES=1000 BENCH_SERVICES=100 BENCH_ROUNDS=5
. "$(dirname "$0")/cluster/common.sh"
bench_need python3
bench_mesh_bin
. "$REPO_DIR/scripts/env.sh"
(cd "$REPO_DIR" && cargo build -q --profile bench-build -p mesh-xds --example ads_fan_out)
export ADS_FAN_OUT_BIN="$CARGO_TARGET_DIR/bench-build/examples/ads_fan_out"
bench_start
ulimit -n 8192
python3 "$BENCH_DIR/cluster/xds_fan_out.py"
