#!/usr/bin/env python3
"""Cross-region replicas at real dataset sizes: what each group event costs in resyncs.

Applies a primary service (local-1) with one read replica (local-2), loads it with --gb of mixed
values (strings of 100 B to 16 KiB, hashes, lists, sets, sorted sets; random, so they compress
about as little as real data), starts a steady writer (--rate SETs of --value-bytes per second,
through whichever node is the primary), then, one after another:

  replica create     a second read replica (local-3) applied, until its initial sync is done,
                     --runs times (destroyed in between), interleaved with the floor: the same
                     sync done by hand (the same valkey-server, started directly, REPLICAOF
                     from a client) with the best of the candidate settings tried once each
  switchover         `promote = true` on the new replica, applied
  failover           kill -9 of that primary, until every survivor follows the promoted node;
                     then the killed node restarted by an apply
  restart by apply   a setting that restarts the second replica (io_threads) applied
  power off/on       its `powered = false`, applied, then `powered = true`, applied
  link cut 5 s, 60 s it cannot reach its primary (its replication password made wrong and its
                     link closed) for that long, until it has caught up

For each it prints the full and partial resyncs the nodes' own counters (INFO stats sync_full,
sync_partial_ok, sync_partial_err, summed over every data node, per process) moved by, and the
time until the group was settled again (every replica linked, no sync in progress, the
primary's offset reached). The writer's acknowledged writes must all be on the primary at the
end, after a failover too (asynchronous replication may lose the last moment's writes there:
the count lost is printed).

usage: bench/size.py [--gb 1] [--rate 2000] [--value-bytes 500] [--binary PATH] [--declare]
                     [--replica-persistence rdb|off] [--quick] [--keep]
  --declare  sizes the backlog from the write rate and the longest cut (the provider's
             expected_write_kib_per_second and longest_link_outage_seconds)
  --quick    0.1 GB, the link cut of 60 s skipped
"""
import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import valkey

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from failover import REPO, TERRAFORM, pid_of, setup  # noqa: E402
from suite import HEADER, free_port  # noqa: E402

CONFIG = """
resource "valkey_service" "primary" {
  name   = "primary"
  plan   = "startup-4"
  region = "local-1"
  failover {
    down_after_ms = 2000
  }
  valkey_user_config {
%(backlog)s  }
}
resource "valkey_read_replica" "r0" {
  name            = "r0"
  primary_service = valkey_service.primary.name
  plan            = "startup-4"
  region          = "local-2"
  valkey_user_config {
    persistence = "%(replica_persistence)s"
%(backlog)s  }
}
%(r1)s
output "primary" {
  value     = valkey_service.primary.service_uri
  sensitive = true
}
output "r0" {
  value     = valkey_read_replica.r0.service_uri
  sensitive = true
}
"""
R1 = """
resource "valkey_read_replica" "r1" {
  name            = "r1"
  primary_service = valkey_service.primary.name
  plan            = "startup-4"
  region          = "local-3"
  promote         = %(r1_promote)s
  powered         = %(r1_powered)s
  valkey_user_config {
    io_threads  = %(r1_threads)s
    persistence = "%(replica_persistence)s"
%(backlog)s  }
}
output "r1" {
  value     = valkey_read_replica.r1.service_uri
  sensitive = true
}
"""
COUNTERS = ("sync_full", "sync_partial_ok", "sync_partial_err")


class Group:
    """A working directory with the group's configuration, applied through real Terraform."""

    def __init__(self, binary, declare, rate_kib, replica_persistence):
        self.path = tempfile.mkdtemp(prefix="bench-size-")
        self.data = os.path.join(self.path, "data")
        self.env = dict(setup(self.path, binary), NO_COLOR="1")
        self.server = self.env["VALKEY_SERVER"]
        self.settings = {"r1": "", "r1_promote": "false", "r1_powered": "true", "r1_threads": "1",
                         "replica_persistence": replica_persistence}
        # The cut of 60 s at the declared rate, with room: what a user who expects it declares.
        self.backlog = (f"    expected_write_kib_per_second = {rate_kib}\n    longest_link_outage_seconds   = 90\n"
                        if declare else "")

    def apply(self, init=False, **changes):
        self.settings.update(changes)
        values = dict(self.settings, backlog=self.backlog)
        values["r1"] = R1 % values if values["r1"] else ""
        with open(os.path.join(self.path, "main.tf"), "w") as f:
            f.write(HEADER % self.data + CONFIG % values)
        if init:
            self.tf("init", "-input=false")
        start = time.perf_counter()
        self.tf("apply", "-auto-approve", "-input=false")
        return time.perf_counter() - start

    def tf(self, *args):
        out = subprocess.run([TERRAFORM, *args], cwd=self.path, env=self.env, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"terraform {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
        return out.stdout

    def uris(self):
        names = ["primary", "r0"] + (["r1"] if self.settings["r1"] else [])
        return {n: self.tf("output", "-raw", n) for n in names}

    def close(self):
        subprocess.run([TERRAFORM, "destroy", "-auto-approve", "-input=false"], cwd=self.path, env=self.env,
                       capture_output=True)
        shutil.rmtree(self.path, ignore_errors=True)


def client(uri):
    return valkey.from_url(uri, socket_timeout=5, socket_connect_timeout=1)


def load(uri, gigabytes):
    """Mixed values until the node's dataset holds `gigabytes` (used_memory_dataset)."""
    c = client(uri)
    rng = random.Random(16)
    pool = os.urandom(1 << 20)

    def blob(size):
        at = rng.randrange(0, len(pool) - size)
        return pool[at:at + size]

    target = int(gigabytes * (1 << 30))
    n = 0
    start = time.perf_counter()
    while c.info("memory")["used_memory_dataset"] < target:
        p = c.pipeline(transaction=False)
        for _ in range(2000):
            n += 1
            kind = n % 10
            if kind < 6:
                p.set(f"s:{n}", blob(rng.choice((100, 400, 1000, 4000, 16000))))
            elif kind == 6:
                p.hset(f"h:{n}", mapping={f"f{i}": blob(100) for i in range(20)})
            elif kind == 7:
                p.rpush(f"l:{n}", *[blob(200) for _ in range(20)])
            elif kind == 8:
                p.sadd(f"z:{n}", *[blob(64) for _ in range(30)])
            else:
                p.zadd(f"o:{n}", {blob(64): i for i in range(30)})
        p.execute()
    mem = c.info("memory")
    print(f"loaded {n} keys, used_memory_dataset {mem['used_memory_dataset'] / (1 << 30):.2f} GiB, "
          f"used_memory {mem['used_memory'] / (1 << 30):.2f} GiB in {time.perf_counter() - start:.0f} s", flush=True)


class Writer(threading.Thread):
    """A steady writer to whichever node is the primary; counts acknowledged writes."""

    def __init__(self, uris, rate, value_bytes):
        super().__init__(daemon=True)
        self.uris, self.rate, self.value = list(uris), rate, b"v" * value_bytes
        self.acked, self.stopping = [], threading.Event()

    def primary(self):
        while not self.stopping.is_set():
            for uri in self.uris:
                try:
                    c = client(uri)
                    if c.info("replication")["role"] == "master":
                        return c
                except Exception:
                    pass
            time.sleep(0.05)
        return None

    def run(self):
        c = self.primary()
        n, batch, tick = 0, max(1, self.rate // 100), time.perf_counter()
        while not self.stopping.is_set():
            try:
                p = c.pipeline(transaction=False)
                keys = [f"w:{n + i}" for i in range(batch)]
                for k in keys:
                    p.set(k, self.value)
                p.execute()
                self.acked.extend(keys)
                n += batch
            except Exception:
                c = self.primary()
                continue
            tick += 0.01
            time.sleep(max(0.0, tick - time.perf_counter()))

    def stop(self):
        self.stopping.set()
        self.join()


def counters(uris):
    """Per process (run_id): the sync counters of every data node that answers."""
    seen = {}
    for uri in uris:
        try:
            c = client(uri)
            stats, server = c.info("stats"), c.info("server")
            seen[server["run_id"]] = tuple(stats[k] for k in COUNTERS)
        except Exception:
            pass
    return seen


def moved(before, after):
    """How far the counters moved: a process that started meanwhile counts from zero."""
    total = [0, 0, 0]
    for run_id, values in after.items():
        base = before.get(run_id, (0, 0, 0))
        for i in range(3):
            total[i] += values[i] - base[i]
    return total


def settled(uris, within=600):
    """Until one primary answers, every other node follows it with no sync in progress and
    has reached the primary's offset as it was when this started looking."""
    deadline = time.time() + within
    target = None
    while time.time() < deadline:
        try:
            infos = {u: client(u).info("replication") for u in uris}
        except Exception:
            time.sleep(0.05)
            continue
        primaries = [u for u, i in infos.items() if i["role"] == "master"]
        if len(primaries) == 1:
            target = target or infos[primaries[0]]["master_repl_offset"]
            if all(i["role"] == "master" or (i.get("master_link_status") == "up"
                                               and i.get("master_sync_in_progress") == 0
                                               and i.get("slave_repl_offset", 0) >= target)
                   for i in infos.values()):
                return
        time.sleep(0.05)
    sys.exit(f"the group did not settle within {within} s")


def event(name, uris, action, rows):
    before = counters(uris())
    start = time.perf_counter()
    action()
    acted = time.perf_counter()
    # Finding the nodes again (terraform output) is the bench's own work: not counted.
    targets = uris()
    looked_up = time.perf_counter() - acted
    settled(targets)
    took = time.perf_counter() - start - looked_up
    full, ok, err = moved(before, counters(targets))
    rows.append((name, full, ok, err, took))
    print(f"{name:<34} full {full}  partial ok {ok}  partial err {err}  {took:6.1f} s", flush=True)


def floor_sync(server, primary_uri, replication_password, work, settings):
    """The same initial sync by hand: a valkey-server started directly with `settings`,
    REPLICAOF from a client, until the link is up and the sync done."""
    host, port = "127.0.3.1", free_port("127.0.3.1")
    d = os.path.join(work, f"floor-{port}")
    os.makedirs(d)
    args = [server, "--bind", host, "--port", str(port), "--dir", d, "--save", "", "--requirepass", "pw",
            "--masteruser", "replicator", "--masterauth", replication_password, *settings]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        c = valkey.Valkey(host=host, port=port, password="pw", socket_timeout=5)
        while True:
            try:
                c.ping()
                break
            except Exception:
                time.sleep(0.002)
        up = primary_uri.rsplit("@", 1)[1]
        start = time.perf_counter()
        c.replicaof(up.rsplit(":", 1)[0], int(up.rsplit(":", 1)[1]))
        primary, target = client(primary_uri), None
        while True:
            i = c.info("replication")
            if i.get("master_link_status") == "up" and i.get("master_sync_in_progress") == 0:
                # As for the provider's replica (`settled`): until it reached the primary's
                # offset as it was when the sync was seen done.
                target = target or primary.info("replication")["master_repl_offset"]
                if i.get("slave_repl_offset", 0) >= target:
                    return time.perf_counter() - start
            time.sleep(0.005)
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(d, ignore_errors=True)


FLOOR_CANDIDATES = {
    "diskless sync, load on-empty-db": ["--repl-diskless-load", "on-empty-db"],
    "diskless sync, load swapdb": ["--repl-diskless-load", "swapdb"],
    "diskless sync, load to disk first": ["--repl-diskless-load", "disabled"],
    "dual-channel, load on-empty-db": ["--repl-diskless-load", "on-empty-db", "--dual-channel-replication-enabled",
                                       "yes"],
}


def replication_password(data):
    conf = open(os.path.join(data, "services/primary/node-0/valkey.conf")).read()
    return next(line.split()[1] for line in conf.splitlines() if line.startswith("masterauth "))


def link_cut(uri, seconds):
    """The replica's link down for `seconds`: its password to the primary wrong and its link
    closed, so it retries and fails; then the password restored."""
    def act():
        c = client(uri)
        right = c.config_get("masterauth")["masterauth"]
        c.config_set("masterauth", "cut-" + right)
        c.client_kill_filter(_type="master")
        time.sleep(seconds)
        c.config_set("masterauth", right)
    return act


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=1.0)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--value-bytes", type=int, default=500)
    ap.add_argument("--binary", default=os.path.join(REPO, "target/release/terraform-provider-valkey"))
    ap.add_argument("--declare", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=5, help="replica creates and floor syncs, interleaved, median")
    ap.add_argument("--replica-persistence", default="rdb", choices=("rdb", "off"))
    ap.add_argument("--keep", action="store_true", help="leave the group running (its directory is printed)")
    args = ap.parse_args()
    if args.quick:
        args.gb = 0.1
    rate_kib = args.rate * (args.value_bytes + 40) // 1024
    g = Group(args.binary, args.declare, rate_kib, args.replica_persistence)
    rows = []
    writer = None
    try:
        g.apply(init=True)
        uris = g.uris()
        load(uris["primary"], args.gb)
        settled(list(uris.values()))
        writer = Writer(uris.values(), args.rate, args.value_bytes)
        writer.start()
        time.sleep(2)
        print(f"writer: {args.rate} SET/s of {args.value_bytes} B (about {rate_kib} KiB/s of replication stream)"
              f"{'; backlog declared from it' if args.declare else ''}", flush=True)

        # Each candidate once, then the best one and the provider's create interleaved.
        password = replication_password(g.data)
        screened = {name: floor_sync(g.server, uris["primary"], password, g.path, settings)
                    for name, settings in FLOOR_CANDIDATES.items()}
        for name, took in screened.items():
            print(f"floor by hand, {name:<34} {took:6.2f} s", flush=True)
        best = min(screened, key=screened.get)

        def all_uris():
            return list(g.uris().values())

        creates, floors = [], []
        for run in range(args.runs):
            if run:
                g.apply(r1="")
            floors.append(floor_sync(g.server, uris["primary"], password, g.path, FLOOR_CANDIDATES[best]))
            event("replica create", all_uris, lambda: g.apply(r1="yes"), rows)
            creates.append(rows[-1][4])
            if run < args.runs - 1:
                rows.pop()
        uris = g.uris()
        writer.uris = list(uris.values())
        create, floor = statistics.median(creates), statistics.median(floors)
        rows[-1] = rows[-1][:4] + (create,)
        print(f"replica create median {create:.2f} s of {fmt(creates)} against the floor ({best}) median "
              f"{floor:.2f} s of {fmt(floors)}, interleaved: {create / floor:.2f}x (goal <= 1.1x)", flush=True)
        event("switchover (promote)", all_uris, lambda: g.apply(r1_promote="true"), rows)

        def kill_primary():
            for uri in uris.values():
                try:
                    if client(uri).info("replication")["role"] == "master":
                        os.kill(pid_of(g.data, uri), signal.SIGKILL)
                        return
                except Exception:
                    pass
        event("failover (kill -9 of the primary)", lambda: [u for u in all_uris() if alive(u)], kill_primary, rows)
        # promote stays false from here: true would hand the group back to r1 at every apply.
        event("failover: killed node back by apply", all_uris, lambda: g.apply(r1_promote="false"), rows)
        # r1, killed and back, is a replica now: the events below restart and cut it.
        event("replica restart by apply", all_uris, lambda: g.apply(r1_threads="2"), rows)
        event("power off/on", all_uris, lambda: (g.apply(r1_powered="false"), g.apply(r1_powered="true")), rows)
        event("link cut 5 s", all_uris, link_cut(uris["r1"], 5), rows)
        if not args.quick:
            event("link cut 60 s", all_uris, link_cut(uris["r1"], 60), rows)
        writer.stop()
        primary = next(client(u) for u in all_uris() if client(u).info("replication")["role"] == "master")
        lost = sum(1 for i in range(0, len(writer.acked), 1000)
                   if primary.exists(*writer.acked[i:i + 1000]) != len(writer.acked[i:i + 1000]))
        print(f"acknowledged writes {len(writer.acked)}; batches of 1000 with a write missing on the primary: {lost}")
        print()
        print("| event | full resyncs | partial resyncs | time |")
        print("| --- | --- | --- | --- |")
        for name, full, ok, err, took in rows:
            print(f"| {name} | {full} | {ok}{f' ({err} refused)' if err else ''} | {took:.1f} s |")
    finally:
        if writer and writer.is_alive():
            writer.stop()
        if args.keep:
            print(f"kept: {g.path}")
        else:
            g.close()


def fmt(samples):
    return "(" + ", ".join(f"{x:.2f}" for x in samples) + ")"


def alive(uri):
    try:
        client(uri).ping()
        return True
    except Exception:
        return False


if __name__ == "__main__":
    main()
