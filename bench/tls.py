#!/usr/bin/env python3
"""What TLS costs, on the TLS-capable valkey-server scripts/valkey-tls.sh makes (Debian 13's
Valkey 8.1), with and without a `tls` block, interleaved in one run:
  1. apply of a primary and 2 read replicas in other regions until every link is up;
  2. replication lag at 20,000 SET/s (bench/replication-lag.py), primary to one replica.
Client-observed failover time with TLS is `bench/failover.py --tls`. `make bench` runs all.

usage: bench/tls.py [--runs 5]   (run `cargo build --release` first)
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from failover import REPO  # noqa: E402
from suite import Workdir  # noqa: E402

BODY = """
resource "valkey_service" "primary" {
  name   = "primary"
  plan   = "startup-4"
  region = "local-1"
  %(tls)s
}
resource "valkey_read_replica" "r" {
  count           = %(replicas)d
  name            = "replica-${count.index}"
  primary_service = valkey_service.primary.name
  plan            = "startup-4"
  region          = "local-${count.index + 2}"
}
output "primary" {
  value     = valkey_service.primary.service_uri
  sensitive = true
}
output "replica" {
  value     = valkey_read_replica.r[0].service_uri
  sensitive = true
}
output "ca" {
  value = valkey_service.primary.ca_certificate
}
"""


def workdir(server, tls, replicas):
    """bench/suite.py's working directory, its provider running `server` (VALKEY_SERVER)."""
    w = Workdir()
    w.env["VALKEY_SERVER"] = server
    w.write(BODY % {"tls": "tls {}" if tls else "", "replicas": replicas})
    w.tf("init")
    return w


def apply_seconds(w):
    start = time.perf_counter()
    w.tf("apply", "-auto-approve")
    return time.perf_counter() - start


def bench_apply(server, runs):
    dirs = {label: workdir(server, label == "TLS", 2) for label in ("plaintext", "TLS")}
    samples = {label: [] for label in dirs}
    try:
        for _ in range(runs):
            for label, w in dirs.items():
                samples[label].append(apply_seconds(w))
                w.tf("destroy", "-auto-approve")
    finally:
        for w in dirs.values():
            w.close()
    for label, values in samples.items():
        print(f"1. apply primary + 2 replicas until linked, {label}: median {statistics.median(values):.3f} s "
              f"(min {min(values):.3f}, max {max(values):.3f}, {runs} runs)")


def bench_lag(server):
    lag = os.path.join(os.path.dirname(os.path.abspath(__file__)), "replication-lag.py")
    for label in ("plaintext", "TLS"):
        w = workdir(server, label == "TLS", 1)
        try:
            w.tf("apply", "-auto-approve")
            # Steady state: in the first second after an apply a plaintext replica showed one
            # stall of about 0.4 s (Valkey 8.1; not traced), which TLS's longer apply hid.
            time.sleep(3)
            primary = w.tf("output", "-raw", "primary")
            replica = w.tf("output", "-raw", "replica")
            extra = []
            if label == "TLS":
                ca = os.path.join(w.path, "ca.pem")
                with open(ca, "w") as f:
                    f.write(w.tf("output", "-raw", "ca"))
                extra = ["--ca-file", ca]
            out = subprocess.run([sys.executable, lag, primary, replica, "--seconds", "10", "--rate", "20000", *extra],
                                 capture_output=True, text=True)
            text = (out.stdout + out.stderr).strip().replace("\n", "; ")
            print(f"2. replication lag at 20,000 SET/s, {label}: {text}")
        finally:
            w.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    server = subprocess.run([os.path.join(REPO, "scripts/valkey-tls.sh")], capture_output=True, text=True,
                            check=True).stdout.strip()
    version = subprocess.run([server, "--version"], capture_output=True, text=True).stdout.split()[2]
    print(f"TLS bench, {os.cpu_count()} cores, {version} (Debian 13's, built with TLS) for both")
    bench_apply(server, args.runs)
    bench_lag(server)


if __name__ == "__main__":
    main()
