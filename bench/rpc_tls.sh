#!/usr/bin/env bash
# The cost of mTLS on the server RPC port: replicated writes at 1/16/64
# connections on a plaintext mesh cluster, an mTLS mesh cluster (certificates
# made with `mesh tls`) and etcd 3.4 with peer TLS, all running at once; then
# failover of the mTLS cluster. See docs/benchmarks.md.
#   ./bench/rpc_tls.sh      MESH_BIN=... BENCH_DURATION=10 BENCH_CONNS="1 16 64" BENCH_RUNS=3
. "$(dirname "$0")/cluster/common.sh"
bench_need etcd-server etcd-client wrk python3
bench_mesh_bin
bench_start
python3 "$BENCH_DIR/cluster/rpc_tls.py"
