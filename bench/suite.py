#!/usr/bin/env python3
"""What the provider costs, side by side with doing the same work by hand.

Prints, for the release build of this repository:
  1. apply of a primary + 5 read replicas until every link is up, against a hand-wired floor
     (the same valkey-server processes started directly and REPLICAOF issued by a client) plus
     Terraform's own overhead (apply of the same number of terraform_data resources);
  2. refresh-and-plan time with 10, 50 and 200 services, per resource, against terraform_data;
  3. provider start-up to the handshake line, and idle RSS, with and without AutoMTLS;
  4. replication lag under a steady write load, provider-made replica against a hand-wired one.
Failover time is measured by bench/failover.py. `make bench` runs both.
"""
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import valkey

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from failover import REPO, TERRAFORM, setup  # noqa: E402

BINARY = os.path.join(REPO, "target/release/terraform-provider-valkey")
COOKIE = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2"
HEADER = """
terraform {
  required_providers {
    valkey = { source = "terraform.local/local/valkey" }
  }
}
provider "valkey" {
  data_dir = "%s"
}
"""


def timed(fn, runs=5):
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), min(samples), max(samples)


class Workdir:
    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="bench-")
        self.env = setup(self.path)
        self.data = os.path.join(self.path, "data")

    def write(self, body):
        with open(os.path.join(self.path, "main.tf"), "w") as f:
            f.write(HEADER % self.data + body)

    def tf(self, *args):
        extra = [] if args[0] == "output" else ["-input=false"]
        out = subprocess.run([TERRAFORM, *args, *extra], cwd=self.path, env=self.env, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"terraform {args} failed:\n{out.stdout}\n{out.stderr}")
        return out.stdout

    def close(self):
        subprocess.run([TERRAFORM, "destroy", "-auto-approve", "-input=false"], cwd=self.path, env=self.env, capture_output=True)
        shutil.rmtree(self.path, ignore_errors=True)


GROUP = """
resource "valkey_service" "primary" {
  name   = "primary"
  plan   = "startup-4"
  region = "local-1"
}
resource "valkey_read_replica" "r" {
  count           = 5
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
"""


def free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_linked(replicas):
    """Until each replica's link is up and its initial sync done."""
    for c in replicas:
        while True:
            info = c.info("replication")
            if info.get("master_link_status") == "up" and info.get("master_sync_in_progress") == 0:
                break
            time.sleep(0.002)


def hand_wired(server, workdir, count=6):
    """The floor: the same processes started directly, then REPLICAOF from a client."""
    procs, clients = [], []
    try:
        for i in range(count):
            host = f"127.0.{i + 1}.1"
            port = free_port(host)
            d = os.path.join(workdir, f"n{i}")
            os.makedirs(d, exist_ok=True)
            procs.append(subprocess.Popen([server, "--bind", host, "--port", str(port), "--dir", d, "--save", "",
                                           "--repl-diskless-sync-delay", "0", "--repl-diskless-load", "on-empty-db",
                                           "--requirepass", "pw", "--masterauth", "pw"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            clients.append((host, port))
        conns = []
        for host, port in clients:
            while True:
                try:
                    c = valkey.Valkey(host=host, port=port, password="pw")
                    c.ping()
                    conns.append(c)
                    break
                except Exception:
                    time.sleep(0.002)
        for c in conns[1:]:
            c.replicaof(*clients[0])
        wait_linked(conns[1:])
    finally:
        for p in procs:
            p.kill()
            p.wait()


def bench_apply(server):
    w = Workdir()
    try:
        w.write(GROUP)
        w.tf("init")

        def apply_once():
            w.tf("apply", "-auto-approve")

        samples = []
        for _ in range(5):
            start = time.perf_counter()
            apply_once()
            samples.append(time.perf_counter() - start)
            w.tf("destroy", "-auto-approve")
        provider = statistics.median(samples)
        floor, _, _ = timed(lambda: hand_wired(server, w.path))
        w.write('resource "terraform_data" "x" {\n  count = 6\n  input = count.index\n}\n')
        tf_samples = []
        for _ in range(5):
            start = time.perf_counter()
            w.tf("apply", "-auto-approve")
            tf_samples.append(time.perf_counter() - start)
            w.tf("destroy", "-auto-approve")
        overhead = statistics.median(tf_samples)
        print(f"1. apply primary + 5 replicas until linked: provider {provider:.3f} s (median of 5); "
              f"hand-wired floor {floor:.3f} s; terraform_data x6 apply {overhead:.3f} s; "
              f"ratio provider / (floor + terraform) = {provider / (floor + overhead):.2f} (goal <= 1.5)")
    finally:
        w.close()


def bench_plan():
    for n in (10, 50, 200):
        w = Workdir()
        try:
            w.write(f"""
resource "valkey_service" "s" {{
  count  = {n}
  name   = "s${{count.index}}"
  plan   = "hobbyist"
  region = "local-${{count.index % 6 + 1}}"
  valkey_user_config {{
    persistence = "off"
  }}
}}
""")
            w.tf("init")
            w.tf("apply", "-auto-approve", "-parallelism=20")
            plan, _, _ = timed(lambda: w.tf("plan"), runs=3)
            w.write(f'resource "terraform_data" "x" {{\n  count = {n}\n  input = count.index\n}}\n')
            w.tf("apply", "-auto-approve", "-parallelism=20")
            base, _, _ = timed(lambda: w.tf("plan"), runs=3)
            print(f"2. refresh+plan of {n:3d} services: {plan:.3f} s ({plan / n * 1000:.1f} ms per resource); "
                  f"terraform_data x{n}: {base:.3f} s ({base / n * 1000:.1f} ms per resource); "
                  f"provider's own cost {(plan - base) / n * 1000:.1f} ms per service")
        finally:
            w.write("")  # destroy the services
            w.tf("apply", "-auto-approve")
            w.close()


def bench_startup():
    cert = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521", "-nodes",
                           "-keyout", "/dev/null", "-days", "1", "-subj", "/O=bench"], capture_output=True, text=True).stdout
    for label, extra in (("plain", {}), ("AutoMTLS", {"PLUGIN_CLIENT_CERT": cert})):
        env = dict(os.environ, TF_PLUGIN_MAGIC_COOKIE=COOKIE, PLUGIN_PROTOCOL_VERSIONS="6", **extra)
        times, rss = [], []
        for _ in range(20):
            start = time.perf_counter()
            p = subprocess.Popen([BINARY], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            p.stdout.readline()
            times.append((time.perf_counter() - start) * 1000)
            time.sleep(0.05)
            with open(f"/proc/{p.pid}/status") as f:
                rss.append(int(next(l for l in f if l.startswith("VmRSS")).split()[1]) / 1024)
            p.kill()
            p.wait()
        spawn = []
        for _ in range(20):
            start = time.perf_counter()
            subprocess.run(["/bin/true"])
            spawn.append((time.perf_counter() - start) * 1000)
        print(f"3. start-up to handshake ({label}): median {statistics.median(times):.1f} ms (min {min(times):.1f}); "
              f"idle RSS {statistics.median(rss):.1f} MB; floor (spawning /bin/true) {statistics.median(spawn):.1f} ms; "
              f"goals < 20 ms and < 15 MB")


def bench_lag(server):
    w = Workdir()
    hand = None
    try:
        w.write(GROUP.replace("count           = 5", "count           = 1"))
        w.tf("init")
        w.tf("apply", "-auto-approve")
        primary = w.tf("output", "-raw", "primary")
        replica = w.tf("output", "-raw", "replica")
        # A replica wired by hand to the same primary, with valkey-server's defaults.
        host, port = "127.0.5.1", free_port("127.0.5.1")
        record = json.load(open(os.path.join(w.data, "services/primary/service.json")))
        d = os.path.join(w.path, "hand")
        os.makedirs(d)
        hand = subprocess.Popen([server, "--bind", host, "--port", str(port), "--dir", d, "--requirepass", "pw",
                                 "--masteruser", "replicator", "--masterauth", record["replication_password"],
                                 "--replicaof", record["nodes"][0]["host"], str(record["nodes"][0]["port"])],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        c = valkey.Valkey(host=host, port=port, password="pw")
        while True:
            try:
                if c.info("replication").get("master_link_status") == "up":
                    break
            except Exception:
                pass
            time.sleep(0.05)
        lag = os.path.join(os.path.dirname(os.path.abspath(__file__)), "replication-lag.py")
        for label, uri in (("provider-made", replica), ("hand-wired", f"valkey://default:pw@{host}:{port}")):
            out = subprocess.run([sys.executable, lag, primary, uri, "--seconds", "10", "--rate", "20000"],
                                 capture_output=True, text=True).stdout.strip().replace("\n", "; ")
            print(f"5. replication lag, {label} replica: {out}")
    finally:
        if hand:
            hand.kill()
            hand.wait()
        w.close()


def main():
    if not os.path.exists(BINARY):
        sys.exit("build first: cargo build --release")
    server = setup(tempfile.mkdtemp(prefix="bench-env-"))["VALKEY_SERVER"]
    print(f"terraform-provider-valkey bench, {os.cpu_count()} cores, "
          f"{subprocess.run([server, '--version'], capture_output=True, text=True).stdout.split()[2]}, "
          f"{subprocess.run([TERRAFORM, 'version'], capture_output=True, text=True).stdout.splitlines()[0]}")
    bench_startup()
    bench_apply(server)
    bench_plan()
    bench_lag(server)


if __name__ == "__main__":
    main()
