#!/usr/bin/env python3
"""A steady writer that reaches a replication group the way docs/guides/failover.md tells
applications to: valkey-py's Sentinel client, given the Sentinel addresses, the Sentinel
password, the group's name and the group's one application password.

Each acknowledged SET is logged as `A <n> <unix ms>`, each failed one as `E <unix ms> <error>`
(one line each, flushed), until the process receives SIGTERM or SIGINT.

With --ca-file (a group with a tls block), every connection, to Sentinels and to nodes, uses
TLS and trusts that CA certificate (the service's ca_certificate), as the guide documents.

With --username (an application user, a valkey_user), the client logs in to the nodes as
that user with --password, as the users guide documents.

usage: sentinel_writer.py --sentinels H:P,H:P --sentinel-password S --group G --password P
                          --prefix KEYPREFIX --log FILE [--interval-ms 1] [--ca-file CA.pem]
                          [--username USER]
"""
import argparse
import signal
import sys
import time

from valkey.sentinel import Sentinel


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sentinels", required=True)
    ap.add_argument("--sentinel-password", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--interval-ms", type=float, default=1.0)
    ap.add_argument("--ca-file")
    ap.add_argument("--username")
    args = ap.parse_args()

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))

    # The configuration the failover guide documents.
    sentinels = [(h, int(p)) for h, p in (a.rsplit(":", 1) for a in args.sentinels.split(","))]
    tls = {"ssl": True, "ssl_ca_certs": args.ca_file} if args.ca_file else {}
    user = {"username": args.username} if args.username else {}
    sentinel = Sentinel(
        sentinels,
        sentinel_kwargs={"password": args.sentinel_password, "socket_timeout": 0.5, **tls},
        password=args.password,
        socket_timeout=0.5,
        **user,
        **tls,
    )
    primary = sentinel.master_for(args.group)

    n = 0
    with open(args.log, "w", buffering=1) as log:
        while not stopping:
            try:
                primary.set(f"{args.prefix}:{n}", n)
                log.write(f"A {n} {int(time.time() * 1000)}\n")
                n += 1
                time.sleep(args.interval_ms / 1000)
            except Exception as e:  # any failure: note it and keep going, as an application would
                reason = str(e).replace("\n", " ")[:200]
                log.write(f"E {int(time.time() * 1000)} {type(e).__name__}: {reason}\n")
                time.sleep(0.01)
    return 0


if __name__ == "__main__":
    sys.exit(main())
