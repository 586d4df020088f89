#!/usr/bin/env bash
# Installs what the mesh-dns integration tests run against: dig
# (bind9-dnsutils). Idempotent; quick when it is already there.
set -euo pipefail
command -v dig >/dev/null && exit 0
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
echo "mesh-dns tests: installing bind9-dnsutils for dig" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq bind9-dnsutils >/dev/null
command -v dig >/dev/null
