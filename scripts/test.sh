#!/usr/bin/env bash
# Set up the machine and run every test: formatting, lints, unit tests and
# the integration tests that start real agent processes.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings
# The integration tests start the real binary.
cargo build -q -p mesh
if cargo nextest --version >/dev/null 2>&1; then
  # Agents under test share 2 cores; two tests at a time keeps Raft timing honest.
  cargo nextest run --workspace --test-threads 2 --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@" -- --test-threads 2
fi
