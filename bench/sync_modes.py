#!/usr/bin/env python3
"""How a full sync is fastest: Valkey's sync settings against one loaded primary under writes.

Starts a primary by hand (the valkey-server the provider runs, the provider's sync settings:
diskless, no delay), loads it with --gb of the mixed values bench/size.py uses, starts the same
steady writer, then syncs a new replica (started directly, REPLICAOF from a client, until its
link is up, its sync done and the primary's offset reached) with each candidate, --runs rounds
interleaved, and prints the median of each.

usage: bench/sync_modes.py [--gb 1] [--rate 3000] [--value-bytes 500] [--runs 3]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import valkey

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from size import FLOOR_CANDIDATES, Writer, floor_sync, fmt, load  # noqa: E402
from suite import free_port  # noqa: E402
from failover import REPO  # noqa: E402

# Primary-side settings a candidate changes, set with CONFIG SET before its sync.
PRIMARY_SIDE = {"rdbcompression off, load on-empty-db": ("rdbcompression", "no")}
CANDIDATES = dict(FLOOR_CANDIDATES, **{"rdbcompression off, load on-empty-db": ["--repl-diskless-load",
                                                                                  "on-empty-db"]})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=1.0)
    ap.add_argument("--rate", type=int, default=3000)
    ap.add_argument("--value-bytes", type=int, default=500)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    server = subprocess.run([os.path.join(REPO, "scripts/valkey-server-path.sh")], capture_output=True, text=True,
                            check=True).stdout.strip()
    work = tempfile.mkdtemp(prefix="bench-sync-")
    port = free_port("127.0.1.1")
    primary = subprocess.Popen([server, "--bind", "127.0.1.1", "--port", str(port), "--dir", work, "--save", "",
                                "--requirepass", "pw", "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay",
                                "0", "--user", "replicator", "on", ">replpw", "-@all", "+psync", "+replconf", "+ping"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"valkey://default:pw@127.0.1.1:{port}"
    writer = None
    try:
        c = valkey.from_url(uri)
        while True:
            if primary.poll() is not None:
                sys.exit(f"the primary exited with {primary.returncode}")
            try:
                c.ping()
                break
            except Exception:
                time.sleep(0.01)
        load(uri, args.gb)
        writer = Writer([uri], args.rate, args.value_bytes)
        writer.start()
        time.sleep(2)
        samples = {name: [] for name in CANDIDATES}
        for _ in range(args.runs):
            for name, settings in CANDIDATES.items():
                setting, value = PRIMARY_SIDE.get(name, ("rdbcompression", "yes"))
                c.config_set(setting, value)
                samples[name].append(floor_sync(server, uri, "replpw", work, settings))
        c.config_set("rdbcompression", "yes")
        print(f"1 primary, {args.gb} GB, writer {args.rate} SET/s of {args.value_bytes} B; {args.runs} rounds:")
        for name, taken in sorted(samples.items(), key=lambda kv: statistics.median(kv[1])):
            print(f"  {name:<38} median {statistics.median(taken):6.2f} s of {fmt(taken)}")
    finally:
        if writer:
            writer.stop()
        primary.kill()
        primary.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
