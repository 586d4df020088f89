# Sourced by bench/{kv_write,failover,gossip,footprint}.sh.
#
# Installs the Debian packages a benchmark needs, finds (or builds) the mesh
# binary, makes a scratch dir, and on exit kills every process the benchmark
# started (the Python side writes each child's pid to $BENCH_WORK/pids) and
# removes the scratch dir (set BENCH_KEEP=1 to keep logs for a post-mortem).

set -euo pipefail

# No __pycache__ in the source tree.
export PYTHONDONTWRITEBYTECODE=1

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"

bench_need() {
  local need=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
  done
  if ((${#need[@]})); then
    echo "bench: installing ${need[*]}" >&2
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  fi
}

# The optimised agent: $MESH_BIN if given, else `cargo build --profile bench-build`
# (a no-op when it is up to date).
bench_mesh_bin() {
  if [ -n "${MESH_BIN:-}" ]; then
    [ -x "$MESH_BIN" ] || { echo "bench: MESH_BIN=$MESH_BIN is not executable" >&2; exit 1; }
  else
    "$REPO_DIR/scripts/setup.sh"
    # shellcheck source=../../scripts/env.sh
    . "$REPO_DIR/scripts/env.sh"
    (cd "$REPO_DIR" && cargo build -q --profile bench-build -p mesh)
    MESH_BIN="$CARGO_TARGET_DIR/bench-build/mesh"
  fi
  export MESH_BIN
}

bench_cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  if [ -f "$BENCH_WORK/pids" ]; then
    while read -r pid; do
      [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    done <"$BENCH_WORK/pids"
  fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    echo "bench: logs kept in $BENCH_WORK" >&2
  else
    rm -rf "$BENCH_WORK"
  fi
  exit "$rc"
}

# On a shared machine a compile on both cores makes any figure meaningless:
# wait (bounded, BENCH_QUIET_WAIT seconds, default 900) until the 1-minute
# load average is under BENCH_QUIET_LOAD (default 1.0), then go on anyway.
bench_wait_quiet() {
  local limit="${BENCH_QUIET_WAIT:-900}" max="${BENCH_QUIET_LOAD:-1.0}" waited=0 load
  while :; do
    load="$(cut -d' ' -f1 /proc/loadavg)"
    awk -v l="$load" -v m="$max" 'BEGIN { exit !(l < m) }' && return 0
    if ((waited >= limit)); then
      echo "bench: load $load still ≥ $max after ${limit}s; measuring anyway (figures will be noisy)" >&2
      return 0
    fi
    ((waited == 0)) && echo "bench: load $load ≥ $max; waiting up to ${limit}s for a quiet machine" >&2
    sleep 10
    waited=$((waited + 10))
  done
}

bench_start() {
  bench_wait_quiet
  BENCH_WORK="$(mktemp -d "${TMPDIR:-/tmp}/mesh-bench.XXXXXX")"
  export BENCH_WORK
  # -dev agents make their data dir under $TMPDIR: keep them in ours.
  export TMPDIR="$BENCH_WORK"
  : >"$BENCH_WORK/pids"
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
  echo "bench: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), scratch $BENCH_WORK" >&2
}
