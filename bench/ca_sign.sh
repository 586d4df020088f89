#!/usr/bin/env bash
# CA leaf signing: mesh-ca leaves/s on one thread (EC P-256 root; each leaf is
# a fresh P-256 key pair + one ECDSA signature + PEM encoding) beside
# `openssl speed ecdsap256` sign/s on one core. A leaf costs a keygen and a
# signature, openssl's figure a signature only, so 50% would be parity.
#   ./bench/ca_sign.sh          BENCH_SECS=5
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${BENCH_SECS:-5}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/mesh-target-ca}"

echo "bench: building mesh-ca (profile bench-build)" >&2
nice -n 10 cargo bench --profile bench-build -p mesh-ca --bench sign --no-run >&2

echo "== mesh-ca ($secs s)"
mesh_out="$(cargo bench --profile bench-build -p mesh-ca --bench sign -- "$secs" 2>/dev/null)"
echo "$mesh_out" | grep -v '^leaves_per_sec='
leaves="$(echo "$mesh_out" | sed -n 's/^leaves_per_sec=//p')"

echo "== openssl speed -seconds $secs ecdsap256"
ossl_out="$(openssl speed -seconds "$secs" ecdsap256 2>/dev/null)"
echo "$ossl_out" | grep -E 'sign/s|nistp256'
sign="$(echo "$ossl_out" | awk '/nistp256\)/ { print $(NF-1) }' | tail -1)"

echo "== result"
echo "$(openssl version)"
echo "mesh-ca leaves/s:            $leaves"
echo "openssl ECDSA P-256 sign/s:  $sign"
awk -v l="$leaves" -v s="$sign" 'BEGIN { printf "ratio leaves/s / openssl sign/s: %.1f%% (target >= 30%%; leaves >= 5000/s)\n", 100 * l / s }'
