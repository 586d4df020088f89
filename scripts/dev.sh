#!/usr/bin/env bash
# Set up the machine, build, and run a single dev agent (HTTP on 127.0.0.1:8500).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh
exec cargo run -q -p mesh -- agent -dev "$@"
