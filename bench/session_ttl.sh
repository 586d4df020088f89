#!/usr/bin/env bash
# Session TTL renewals: 10,000 sessions (TTL 10s) on one mesh server, each
# renewed once every 10 s, vs as many leases kept alive on one etcd 3.4
# member, in one run: server CPU per 1,000 renewals, renewal latency, Raft
# index growth, and that nothing expired. See bench/cluster/session_ttl.py.
#   ./bench/session_ttl.sh                    # builds the bench-build agent
#   BENCH_SESSIONS=10000 BENCH_WINDOW=30 BENCH_RENEW_THREADS=4 BENCH_ETCD_TTL=20
#   BENCH_KEEP=1 (keep logs)
. "$(dirname "$0")/cluster/common.sh"
bench_need etcd-server etcd-client python3
bench_mesh_bin
bench_start
python3 "$BENCH_DIR/cluster/session_ttl.py"
