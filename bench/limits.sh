#!/usr/bin/env bash
# Hostile-input limits: replicated writes and the health read before and
# after them (etcd 3.4 in the same run), and the health read under 2,000
# slow connections. See docs/benchmarks.md.
#   ./bench/limits.sh                         # builds both mesh binaries
#   MESH_BIN=new MESH_BASE_BIN=old ./bench/limits.sh
#   BASE_REV=c4aae80 BENCH_DURATION=10 BENCH_ROUNDS=3 BENCH_KEEP=1
. "$(dirname "$0")/cluster/common.sh"
bench_need etcd-server etcd-client wrk python3
if [ -z "${MESH_BASE_BIN:-}" ]; then
  # The last build before the limits, from a worktree of BASE_REV.
  base_rev="${BASE_REV:-c4aae80}"
  base_dir="$(mktemp -d /tmp/mesh-base.XXXXXX)"
  git -C "$REPO_DIR" worktree add -q --detach "$base_dir" "$base_rev"
  (cd "$base_dir" && . scripts/env.sh && cargo build -q --profile bench-build -p mesh)
  MESH_BASE_BIN="/tmp/mesh-base-$base_rev"
  cp "$(cd "$base_dir" && . scripts/env.sh && echo "$CARGO_TARGET_DIR")/bench-build/mesh" "$MESH_BASE_BIN"
  git -C "$REPO_DIR" worktree remove --force "$base_dir"
fi
export MESH_BASE_BIN
bench_mesh_bin
bench_start
ulimit -n 16384
python3 "$BENCH_DIR/cluster/limits.py"
