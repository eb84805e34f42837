#!/usr/bin/env bash
# Makes sure valkey-py, the Sentinel-aware client library the group tests and the failover
# benchmark drive the group with (as docs/guides/failover.md tells applications to), is
# importable by python3; installs it from PyPI when it is not.
set -euo pipefail
if ! python3 -c 'import valkey.sentinel' 2>/dev/null; then
  echo "valkey-py not found; installing it with: python3 -m pip install 'valkey>=6.1,<7'" >&2
  python3 -m pip install --quiet --disable-pip-version-check 'valkey>=6.1,<7' >&2
fi
python3 -c 'import valkey; print("valkey-py", valkey.__version__)'
