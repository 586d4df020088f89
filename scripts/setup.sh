#!/usr/bin/env bash
# Installs what building and testing mesh needs on a fresh Debian machine.
# Idempotent and quick when everything is already there.
set -euo pipefail

need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# libclang-dev: rocksdb's bindgen; mold: the linker in .cargo/config.toml;
# ccache: caches RocksDB's C++ between clean builds; protobuf-compiler: the
# generated-code drift test; strace: the store's fsync-order test;
# prometheus: scrapes the agents in the telemetry test; chromium and
# chromium-driver: the UI test; gnupg: signing the release snapshot; bind9-dnsutils etc. come with the tests that use them.
for pkg in libclang-dev mold ccache protobuf-compiler bind9-dnsutils python3-venv iptables iproute2 strace prometheus chromium chromium-driver gnupg "$@"; do
  have "$pkg" || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
