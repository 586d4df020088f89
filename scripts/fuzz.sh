#!/usr/bin/env bash
# Short, bounded fuzzing rounds of every cargo-fuzz target (libFuzzer needs
# a nightly toolchain, so this is not part of CI; the stable counterparts
# run in every test run). Each target runs SECONDS_EACH seconds (default 30);
# a crash stops the script and leaves its input under <crate>/fuzz/artifacts.
#   ./scripts/fuzz.sh                  # every target
#   ./scripts/fuzz.sh http_json        # some targets, by name
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
SECONDS_EACH="${SECONDS_EACH:-30}"
# Sanitizer builds must not share the test builds' target dir.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-/var/tmp/mesh-fuzz-target}"

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz: needs a nightly toolchain: rustup toolchain install nightly" >&2
  exit 2
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

# dir:target pairs.
all=(
  fuzz:decode_command fuzz:gossip_datagram fuzz:gossip_stream fuzz:http_json
  fuzz:acl_rules fuzz:agent_config fuzz:tfplug_msgpack
  daemon/dns/fuzz:name_parser daemon/dns/fuzz:handler
  daemon/agent/fuzz:mesh_d
)
for entry in "${all[@]}"; do
  dir="${entry%%:*}" target="${entry##*:}"
  if (($#)) && [[ " $* " != *" $target "* ]]; then
    continue
  fi
  echo "== $target ($dir, ${SECONDS_EACH}s)"
  (cd "$dir" && cargo +nightly fuzz run "$target" -- \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -max_len=65536)
done
echo "fuzz: every target ran ${SECONDS_EACH}s without a crash"
