# Sourced by the scripts: one persistent target dir outside the clone, and
# ccache for RocksDB's C++ so a fresh clone builds incrementally.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/mesh-target}"
if command -v ccache >/dev/null; then
  export CC="${CC:-ccache gcc}" CXX="${CXX:-ccache g++}"
fi
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# CI builds each clone once: incremental caches would only fill the disk.
if [ "${CI:-}" = true ]; then
  export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
fi
