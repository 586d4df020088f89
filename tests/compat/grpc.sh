#!/usr/bin/env bash
# grpcio (PyPI) in its own virtualenv, for the proxyless gRPC test; prints
# the path of its python.
set -euo pipefail
venv="${MESH_GRPC_VENV:-/var/tmp/mesh-grpc-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import grpc" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q grpcio
fi
echo "$venv/bin/python"
