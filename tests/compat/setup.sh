#!/usr/bin/env bash
# A virtualenv with py-consul for the compatibility tests (PyPI).
set -euo pipefail
venv="${MESH_COMPAT_VENV:-/var/tmp/mesh-compat-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import consul" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q py-consul
fi
echo "$venv"
