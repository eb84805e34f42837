#!/usr/bin/env bash
# Writes and reads a key through a service URI, to show the demo service answering.
set -euo pipefail
uri="$1"
if python3 -c 'import valkey' 2>/dev/null; then
  python3 - "$uri" <<'PY'
import sys, valkey
client = valkey.from_url(sys.argv[1])
client.set("hello", "from terraform-provider-valkey")
info = client.info("server")
print(f"Connected to Valkey {info['valkey_version']}: GET hello -> {client.get('hello').decode()}")
PY
else
  echo "Connect with any Valkey client to the service URI (python3 -m pip install valkey for the Python one)."
fi
