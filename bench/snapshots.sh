#!/usr/bin/env bash
# Proxy-snapshot fan-out: 1,000 proxies of 100 services watched on one
# server, single intention changes; time until every changed snapshot is
# out and the server's CPU per change, for the build before the snapshot
# hub and the current one, interleaved in one run. See docs/benchmarks.md.
#   ./bench/snapshots.sh     BENCH_RUNS=2 BENCH_PROXIES=1000 BENCH_SERVICES=100 BENCH_ROUNDS=5
#   MESH_BEFORE_BIN=/path/to/old/mesh (else built from BEFORE_REV in a worktree)
. "$(dirname "$0")/cluster/common.sh"
bench_need python3
bench_mesh_bin
. "$REPO_DIR/scripts/env.sh"
BEFORE_REV="${BEFORE_REV:-6550e7d}"
if [ -z "${MESH_BEFORE_BIN:-}" ]; then
  # Both builds share the target dir: keep a copy of the current binary.
  cp "$MESH_BIN" /var/tmp/mesh-after.bench
  MESH_BIN=/var/tmp/mesh-after.bench
  tree="$(mktemp -d /var/tmp/mesh-before.XXXXXX)"
  git -C "$REPO_DIR" worktree add -q --detach "$tree" "$BEFORE_REV"
  (cd "$tree" && cargo build -q --profile bench-build -p mesh)
  cp "$CARGO_TARGET_DIR/bench-build/mesh" /var/tmp/mesh-before.bench
  git -C "$REPO_DIR" worktree remove --force "$tree"
  MESH_BEFORE_BIN=/var/tmp/mesh-before.bench
fi
(cd "$REPO_DIR" && cargo build -q --profile bench-build -p mesh-client --example snapshot_fan_out)
export MESH_BIN MESH_BEFORE_BIN SNAPSHOT_FAN_OUT_BIN="$CARGO_TARGET_DIR/bench-build/examples/snapshot_fan_out"
bench_start
ulimit -n 8192
python3 "$BENCH_DIR/cluster/snapshots.py"
