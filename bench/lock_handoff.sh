#!/usr/bin/env bash
# Lock handoff with 16 contenders: `mesh lock` on 3 mesh servers vs
# `etcdctl lock` on 3 etcd 3.4 members, in one run. See docs/benchmarks.md.
#   ./bench/lock_handoff.sh                   # builds the bench-build agent
#   BENCH_CONTENDERS=16 BENCH_ROUNDS=5 BENCH_KEEP=1 (keep logs)
. "$(dirname "$0")/cluster/common.sh"
bench_need etcd-server etcd-client python3
bench_mesh_bin
bench_start
python3 "$BENCH_DIR/cluster/lock_handoff.py"
