#!/usr/bin/env bash
# Installs the DNS benchmark's peers: dnsperf (load), NSD 4.6 (the
# authoritative server we compare against) and dig. Idempotent.
set -euo pipefail
need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for pkg in dnsperf nsd bind9-dnsutils; do
  have "$pkg" || need+=("$pkg")
done
if ((${#need[@]})); then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  echo "bench/dns: installing ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The package starts a system NSD on port 53; the benchmark runs its own.
if command -v systemctl >/dev/null && systemctl is-active --quiet nsd 2>/dev/null; then
  systemctl stop nsd || true
fi
