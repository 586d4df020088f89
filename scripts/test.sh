#!/usr/bin/env bash
# Set up the machine and run every test: formatting, lints, unit tests and
# the integration tests that start real agent processes.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh

# RocksDB's object files are only inputs to librocksdb.a (ccache keeps its own
# copies); each feature set leaves 2 GB of them, which fills small disks.
find "$CARGO_TARGET_DIR" -path '*/build/librocksdb-sys-*/out/*.o' -delete 2>/dev/null || true

cargo fmt --all -- --check
# Every step builds the whole workspace with all targets, so features unify
# the same way each time and RocksDB's build is reused rather than redone.
cargo clippy --workspace --all-targets -q -- -D warnings
# The `mesh` binary the integration tests start is built as part of the
# workspace's tests (daemon/cli/tests makes cargo build it).
if cargo nextest --version >/dev/null 2>&1; then
  # Agents under test share 2 cores; two tests at a time keeps Raft timing honest.
  cargo nextest run --workspace --test-threads 2 --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@" -- --test-threads 2
fi
