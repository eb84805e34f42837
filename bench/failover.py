#!/usr/bin/env python3
"""Failover time and acknowledged writes lost, through the real provider and Terraform.

For each down_after_ms setting, applies a primary with two read replicas, then RUNS times:
starts a steady writer on the current primary and a Sentinel-aware client (valkey-py's
Sentinel, configured as docs/guides/failover.md says), kill -9s the primary, and measures the
time from the kill to the first write accepted by the promoted replica, the time to the first
write the Sentinel client gets acknowledged, and how many writes the old primary had
acknowledged that the new primary does not have (asynchronous replication loses the last
moment's writes on a crash; a switchover loses none). `terraform apply` then restarts the
killed node as a replica before the next run. With --tls, the group has a `tls` block (on the
TLS-capable valkey-server scripts/valkey-tls.sh makes) and every client trusts its CA.

With --standby PLAN (business-4 or premium-4), the group is that service alone: the kill of its
primary is failed over to a standby, with no read replica.

With --freeze MS..., the primary is frozen (SIGSTOP) for each of those times instead of killed:
how long it stays a primary once it wakes, and what it acknowledged meanwhile that is lost.

usage: bench/failover.py [--runs 5] [--down-after 2000 5000] [--tls] [--freeze 2300 3000 5000]
                        [--standby business-4] [--min-replicas-to-write 0]
       (run `cargo build --release` first)
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import valkey
from valkey.sentinel import Sentinel

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TERRAFORM = os.environ.get("TERRAFORM", "/usr/local/bin/terraform")

# The group's primary service, as both configurations declare it.
PRIMARY = """
terraform {
  required_providers {
    valkey = { source = "terraform.local/local/valkey" }
  }
}
provider "valkey" {
  data_dir = "%(data)s"
  %(provider)s
}
resource "valkey_service" "primary" {
  name   = "primary"
  plan   = "%(plan)s"
  region = "local-1"
  %(tls)s
  valkey_user_config { persistence = "off" }
  failover {
    down_after_ms = %(down_after)d
    %(bound)s
  }
}
"""

CONFIG = PRIMARY + """
resource "valkey_read_replica" "r" {
  count             = 2
  name              = "replica-${count.index}"
  primary_service   = valkey_service.primary.name
  plan              = "startup-4"
  region            = "local-${count.index + 2}"
  failover_priority = 10 + count.index
  valkey_user_config { persistence = "off" }
}
output "uris" {
  value     = concat([valkey_service.primary.service_uri], valkey_read_replica.r[*].service_uri)
  sensitive = true
}
output "group" {
  value = {
    sentinels         = valkey_read_replica.r[0].sentinel_addresses
    sentinel_password = valkey_read_replica.r[0].sentinel_password
    password          = valkey_service.primary.password
    ca_certificate    = valkey_service.primary.ca_certificate
  }
  sensitive = true
}
"""

# With --standby: a service with standbys and no read replica; every node's URI.
STANDBY_CONFIG = PRIMARY + """
output "uris" {
  value = [for n in valkey_service.primary.nodes :
    "${valkey_service.primary.tls == null ? "valkey" : "valkeys"}://default:${valkey_service.primary.password}@${n.host}:${n.port}"]
  sensitive = true
}
output "group" {
  value = {
    sentinels         = valkey_service.primary.sentinel_addresses
    sentinel_password = valkey_service.primary.sentinel_password
    password          = valkey_service.primary.password
    ca_certificate    = valkey_service.primary.ca_certificate
  }
  sensitive = true
}
"""

# With --tls: what every client connection adds (the group's CA file), set by main().
TLS = {}


def terraform(workdir, env, *args):
    out = subprocess.run([TERRAFORM, *args], cwd=workdir, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"terraform {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def setup(workdir, binary=os.path.join(REPO, "target/release/terraform-provider-valkey")):
    """Terraform's environment for `workdir`: `binary` (this repository's release build by
    default) installed through a filesystem mirror in a CLI config written there."""
    mirror = os.path.join(workdir, "mirror/terraform.local/local/valkey/0.1.0/linux_amd64")
    os.makedirs(mirror)
    shutil.copy(binary, os.path.join(mirror, "terraform-provider-valkey_v0.1.0"))
    cli = os.path.join(workdir, "cli.tfrc")
    with open(cli, "w") as f:
        f.write('provider_installation {\n filesystem_mirror {\n path = "%s"\n include = ["terraform.local/*/*"]\n }\n}\n'
                % os.path.join(workdir, "mirror"))
    server = subprocess.run([os.path.join(REPO, "scripts/valkey-server-path.sh")], capture_output=True, text=True, check=True)
    return dict(os.environ, TF_CLI_CONFIG_FILE=cli, VALKEY_SERVER=server.stdout.strip(), TF_IN_AUTOMATION="1")


def role(uri):
    try:
        return valkey.from_url(uri, socket_timeout=0.5, **TLS).info("replication")["role"]
    except Exception:
        return None


def pid_of(data, uri):
    port = uri.rsplit(":", 1)[1]
    for service in os.listdir(os.path.join(data, "services")):
        service_dir = os.path.join(data, "services", service)
        for node in (n for n in os.listdir(service_dir) if n.startswith("node-")):
            path = os.path.join(service_dir, node)
            conf = os.path.join(path, "valkey.conf")
            # With TLS the node listens on tls-port only (port 0).
            if os.path.exists(conf) and any(f"\n{k} {port}\n" in open(conf).read() for k in ("port", "tls-port")):
                return int(open(os.path.join(path, "valkey.pid")).read())
    raise SystemExit(f"no node listens on {uri.rsplit('@', 1)[1]}")


def settle(data, down_after):
    """Waits until every Sentinel agrees on one primary that is not considered down, then for
    the failover timeout, as between real outages: back-to-back kills measure Sentinel's
    recovery from the previous failover rather than a failover."""
    record = json.load(open(os.path.join(data, "services/primary/service.json")))
    tls = dict(TLS, ssl=True) if TLS else {}
    sentinels = [valkey.Valkey(host=s["host"], port=s["port"], password=record["sentinel_password"], **tls)
                 for s in record["sentinels"]]
    settle_sentinels(sentinels, "primary", down_after)


def settle_sentinels(sentinels, group, down_after):
    """Waits (up to a minute) until the clients `sentinels` all name one primary of `group` that
    they do not consider down, then for Sentinel's failover timeout; returns that primary as
    host:port, or None when they never agreed."""
    agreed, deadline = None, time.time() + 60
    while agreed is None and time.time() < deadline:
        views = set()
        for s in sentinels:
            try:
                m = s.sentinel_master(group)
                views.add((m["ip"], m["port"], m["flags"] == "master" if isinstance(m["flags"], str) else
                           m["is_master"] and not m["is_sdown"] and not m["is_odown"]))
            except Exception:
                views.add(None)
        if len(views) == 1 and None not in views and next(iter(views))[2]:
            agreed = next(iter(views))
        else:
            time.sleep(0.1)
    # Sentinel's failover-timeout is max(10 s, 4 x down_after): past it, no Sentinel is still
    # acting on the previous failover.
    time.sleep(max(10.0, 4 * down_after / 1000))
    return agreed and f"{agreed[0]}:{agreed[1]}"


def sentinel_client(group, name="primary"):
    """The client as the failover guide configures it, for the group `name`."""
    tls = dict(TLS, ssl=True) if TLS else {}
    sentinel = Sentinel(
        [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in group["sentinels"]],
        sentinel_kwargs={"password": group["sentinel_password"], "socket_timeout": 0.5, **tls},
        password=group["password"],
        socket_timeout=0.5,
        **tls,
    )
    return sentinel.master_for(name)


def one_run(data, uris, group):
    masters = [u for u in uris if role(u) == "master"]
    if len(masters) != 1:
        roles = {u.rsplit("@", 1)[1]: role(u) for u in uris}
        raise SystemExit(f"expected exactly one primary before the kill, found {roles} (data in {data})")
    primary = masters[0]
    acked, stop = [], threading.Event()

    def writer():
        client = valkey.from_url(primary, socket_timeout=0.5, **TLS)
        i = 0
        while not stop.is_set():
            try:
                client.set(f"w:{i}", i)
                acked.append(i)
                i += 1
            except Exception:
                return
            time.sleep(0.0002)

    client_acks, client_errors = [], []

    def through_sentinel():
        client = sentinel_client(group)
        i = 0
        while not stop.is_set():
            try:
                client.set(f"s:{i}", i)
                client_acks.append(time.perf_counter())
                i += 1
            except Exception:
                client_errors.append(time.perf_counter())
                time.sleep(0.002)

    thread = threading.Thread(target=writer)
    thread.start()
    follower = threading.Thread(target=through_sentinel)
    follower.start()
    time.sleep(1.0)
    os.kill(pid_of(data, primary), 9)
    killed = time.perf_counter()
    others = [u for u in uris if u != primary]
    clients = [valkey.from_url(u, socket_timeout=0.2, **TLS) for u in others]
    new_primary = None
    while new_primary is None and time.perf_counter() - killed < 120:
        for uri, c in zip(others, clients):
            try:
                c.set("failover:probe", "1")
                new_primary = uri
                break
            except Exception:
                pass
        time.sleep(0.005)
    took = time.perf_counter() - killed
    # The client's recovery: its first acknowledged write after the first error the kill caused
    # (a write the old primary answered just before dying may be counted a moment after it).
    deadline = time.perf_counter() + 60

    def recovered():
        broke = next((t for t in client_errors if t > killed), None)
        return broke is not None and next((t for t in client_acks if t > broke), None)

    while not recovered() and time.perf_counter() < deadline:
        time.sleep(0.005)
    client_took = (recovered() or float("nan")) - killed
    stop.set()
    thread.join()
    follower.join()
    check = valkey.from_url(new_primary, **TLS)
    present = check.pipeline(transaction=False)
    for i in acked:
        present.exists(f"w:{i}")
    lost = sum(1 for found in present.execute() if not found)
    return took, client_took, len(acked), lost


def one_freeze(data, uris, group, freeze_ms):
    """SIGSTOPs the primary for `freeze_ms` under the Sentinel client, then measures how long the
    woken primary stays a primary (it takes writes from clients still connected to it until the
    Sentinels demote it) and how many writes it acknowledged after waking are not on the
    primary that follows: the second kind of loss the failover guide describes."""
    primary = next(u for u in uris if role(u) == "master")
    pid = pid_of(data, primary)
    client = sentinel_client(group)
    acks, stop = [], threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            try:
                client.set(f"f{freeze_ms}:{i}", i)
                acks.append((i, time.time()))
                i += 1
                time.sleep(0.001)
            except Exception:
                time.sleep(0.01)

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(1.0)
    os.kill(pid, 19)  # SIGSTOP
    time.sleep(freeze_ms / 1000)
    os.kill(pid, 18)  # SIGCONT
    woke = time.time()
    demoted = None
    while demoted is None and time.time() - woke < 60:
        if role(primary) not in ("master", None):
            demoted = time.time()
        time.sleep(0.05)
    time.sleep(1.0)
    stop.set()
    thread.join()
    now = next(u for u in uris if role(u) == "master")
    check = valkey.from_url(now, **TLS).pipeline(transaction=False)
    after_wake = [i for i, at in acks if at > woke]
    for i in after_wake:
        check.exists(f"f{freeze_ms}:{i}")
    lost = sum(1 for found in check.execute() if not found)
    return now != primary, (demoted - woke) if demoted else None, len(after_wake), lost


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--down-after", type=int, nargs="+", default=[2000, 5000])
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--min-replicas-to-write", type=int,
                    help="the group's write bound (failover.min_replicas_to_write); unset: the provider's default")
    ap.add_argument("--standby", choices=["business-4", "premium-4"],
                    help="the group is a service of this plan alone: its primary fails over to a standby")
    ap.add_argument("--freeze", type=int, nargs="*", default=[],
                    help="instead of kills, SIGSTOP the primary for each of these ms and measure the woken primary")
    args = ap.parse_args()
    provider, tls_block, label = "", "", ""
    if args.tls:
        server = subprocess.run([os.path.join(REPO, "scripts/valkey-tls.sh")], capture_output=True, text=True, check=True)
        provider, tls_block, label = f'valkey_server = "{server.stdout.strip()}"', "tls {}", ' tls'
    if args.standby:
        label += f" {args.standby} alone"
    if args.min_replicas_to_write is not None:
        label += f" min_replicas_to_write={args.min_replicas_to_write}"
    for down_after in args.down_after:
        workdir = tempfile.mkdtemp(prefix="failover-bench-")
        try:
            env = setup(workdir)
            data = os.path.join(workdir, "data")
            with open(os.path.join(workdir, "main.tf"), "w") as f:
                config = STANDBY_CONFIG if args.standby else CONFIG
                bound = ("" if args.min_replicas_to_write is None
                         else f"min_replicas_to_write = {args.min_replicas_to_write}")
                f.write(config % {"data": data, "down_after": down_after, "provider": provider, "tls": tls_block,
                                  "plan": args.standby or "startup-4", "bound": bound})
            terraform(workdir, env, "init", "-input=false")
            terraform(workdir, env, "apply", "-auto-approve", "-input=false")
            terraform(workdir, env, "apply", "-refresh-only", "-auto-approve", "-input=false")
            uris = json.loads(terraform(workdir, env, "output", "-json", "uris"))
            group = json.loads(terraform(workdir, env, "output", "-json", "group"))
            if args.tls:
                ca_file = os.path.join(workdir, "ca.pem")
                with open(ca_file, "w") as f:
                    f.write(group["ca_certificate"])
                TLS["ssl_ca_certs"] = ca_file
            for freeze_ms in args.freeze:
                for run in range(1, args.runs + 1):
                    settle(data, down_after)
                    failed_over, demoted, acked, lost = one_freeze(data, uris, group, freeze_ms)
                    demoted = "never (no failover)" if demoted is None else f"{demoted:.2f} s"
                    print(f"down_after_ms={down_after}{label} primary frozen {freeze_ms} ms, run {run}: "
                          f"failed over {failed_over}; woken primary demoted after {demoted}; "
                          f"{acked} writes acknowledged after it woke, {lost} of them lost")
                    terraform(workdir, env, "apply", "-auto-approve", "-input=false")
            if args.freeze:
                continue
            times, client_times = [], []
            for run in range(1, args.runs + 1):
                settle(data, down_after)
                took, client_took, acked, lost = one_run(data, uris, group)
                times.append(took)
                client_times.append(client_took)
                print(f"down_after_ms={down_after}{label} run {run}: kill -> first write the promoted node accepts "
                      f"{took:.2f} s, -> first write the Sentinel client gets acknowledged {client_took:.2f} s; "
                      f"{acked} writes acknowledged by the old primary, {lost} lost")
                terraform(workdir, env, "apply", "-auto-approve", "-input=false")  # restart the killed node
            for what, values in (("promoted node", times), ("Sentinel client", client_times)):
                print(f"down_after_ms={down_after}{label} {what}: min {min(values):.2f} s, "
                      f"median {statistics.median(values):.2f} s, max {max(values):.2f} s over {len(values)} runs")
        finally:
            if os.environ.get("KEEP"):
                continue
            subprocess.run([TERRAFORM, "destroy", "-auto-approve", "-input=false"], cwd=workdir, env=env,
                           capture_output=True)
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
