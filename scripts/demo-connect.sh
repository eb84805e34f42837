#!/usr/bin/env bash
# Writes a key on the demo's primary and reads it back from its read replica.
set -euo pipefail
primary_uri="$1"
replica_uri="$2"
if python3 -c 'import valkey' 2>/dev/null; then
  python3 - "$primary_uri" "$replica_uri" <<'PY'
import sys, valkey
primary, replica = valkey.from_url(sys.argv[1]), valkey.from_url(sys.argv[2])
primary.set("hello", "from terraform-provider-valkey")
primary.wait(1, 5000)
version = primary.info("server")["valkey_version"]
print(f"Valkey {version}: SET hello on the primary, GET hello on the replica -> {replica.get('hello').decode()}")
PY
else
  echo "Connect with any Valkey client to the URIs (python3 -m pip install valkey for the Python one)."
fi
