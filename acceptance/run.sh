#!/usr/bin/env bash
# The Terraform acceptance suite alone: the real terraform CLI
# (/usr/local/bin/terraform, 1.11) and terraform-provider-mesh against real
# 3-server clusters and built-in proxies, all on 127.0.0.1. The tests live in
# tests/it/terraform.rs, tests/it/terraform_acl.rs and also run as part of ./scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh
cargo build -q -p mesh -p terraform-provider-mesh
cargo nextest run -p mesh-integration --test-threads 2 --no-fail-fast -E 'test(/^terraform(_acl)?::/)' "$@"
