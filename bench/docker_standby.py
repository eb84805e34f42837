#!/usr/bin/env python3
"""A business-4 service alone on the docker cloud, its primary's container killed RUNS times.

On the test engines of scripts/docker-hosts.sh (hosts 1 and 2 as one region), applies a
business-4 service with `failover { down_after_ms = DOWN_AFTER }` and, each run: waits until
every Sentinel agrees on a primary and the previous failover's timeout has passed, starts a
Sentinel-aware client (valkey-py's Sentinel, configured as docs/guides/failover.md says),
`docker kill`s the primary's container through the Engine API, and measures the time from the
kill to the first write the client gets acknowledged after its first error, and the
acknowledged writes the new primary lacks. `terraform apply` then starts the killed container
again as a standby before the next run. bench/failover.py --standby does the same on the local
cloud.

usage: bench/docker_standby.py [--runs 10] [--down-after 2000]   (run `cargo build --release` first)
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import valkey

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from docker import HOSTS, IMAGE, api  # noqa: E402
from failover import REPO, TERRAFORM, sentinel_client, settle_sentinels, setup  # noqa: E402


def config(tag, down_after):
    hosts = ", ".join(f'{{ url = "unix://{s}", advertise_address = "{a}" }}' for s, a in HOSTS[:2])
    return f"""
terraform {{
  required_providers {{
    valkey = {{ source = "terraform.local/local/valkey" }}
  }}
}}
provider "valkey" {{
  data_dir = "data"
  docker {{
    image = "{IMAGE}"
    region {{
      name  = "region-a"
      hosts = [{hosts}]
    }}
  }}
}}
resource "valkey_service" "primary" {{
  name   = "sb-{tag}"
  cloud  = "docker"
  plan   = "business-4"
  region = "region-a"
  failover {{ down_after_ms = {down_after} }}
}}
output "group" {{
  value = {{
    name              = valkey_service.primary.name
    sentinels         = valkey_service.primary.sentinel_addresses
    sentinel_password = valkey_service.primary.sentinel_password
    password          = valkey_service.primary.password
    nodes             = [for n in valkey_service.primary.nodes : "${{n.host}}:${{n.port}}"]
  }}
  sensitive = true
}}
"""


def settle(group, down_after):
    """Every Sentinel names one primary, not down; then Sentinel's failover timeout passes."""
    sentinels = [valkey.Valkey(host=a.rsplit(":", 1)[0], port=int(a.rsplit(":", 1)[1]),
                               password=group["sentinel_password"], socket_timeout=0.5)
                 for a in group["sentinels"]]
    primary = settle_sentinels(sentinels, group["name"], down_after)
    if primary is None:
        raise SystemExit("the Sentinels never agreed on a primary")
    return primary


def one_run(group, primary, tag):
    name = group["name"]
    client = sentinel_client(group, name)
    acks, errors, stop = [], [], threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            try:
                client.set(f"{tag}:{i}", i)
                acks.append((i, time.perf_counter()))
                i += 1
                time.sleep(0.001)
            except Exception:
                errors.append(time.perf_counter())
                time.sleep(0.002)

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(1.0)
    index = group["nodes"].index(primary)
    sock = HOSTS[index % 2][0]
    api(sock, "POST", f"/containers/vk-{name}-{index}/kill")
    killed = time.perf_counter()
    deadline = killed + 60

    def recovered():
        broke = next((t for t in errors if t > killed), None)
        return broke is not None and next((t for _, t in acks if t > broke), None)

    while not recovered() and time.perf_counter() < deadline:
        time.sleep(0.005)
    took = (recovered() or float("nan")) - killed
    time.sleep(0.3)
    stop.set()
    thread.join()
    new = next(a for a in group["nodes"] if a != primary)
    check = valkey.Valkey(host=new.rsplit(":", 1)[0], port=int(new.rsplit(":", 1)[1]),
                          password=group["password"]).pipeline(transaction=False)
    for i, _ in acks:
        check.exists(f"{tag}:{i}")
    lost = sum(1 for found in check.execute() if not found)
    return took, len(acks), lost


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--down-after", type=int, default=2000)
    args = ap.parse_args()
    subprocess.run([os.path.join(REPO, "scripts/docker-hosts.sh"), "ensure", "3"], check=True,
                   stdout=subprocess.DEVNULL)
    work = tempfile.mkdtemp(prefix="bench-docker-standby-")
    env = setup(work)

    def tf(*a):
        out = subprocess.run([TERRAFORM, *a, "-no-color"], cwd=work, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"terraform {' '.join(a)} failed:\n{out.stdout}\n{out.stderr}")
        return out.stdout

    tag = "".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(5))
    with open(os.path.join(work, "main.tf"), "w") as f:
        f.write(config(tag, args.down_after))
    try:
        tf("init", "-input=false")
        tf("apply", "-auto-approve", "-input=false")
        tf("apply", "-refresh-only", "-auto-approve", "-input=false")
        group = json.loads(tf("output", "-json", "group"))
        times = []
        for run in range(1, args.runs + 1):
            primary = settle(group, args.down_after)
            took, acked, lost = one_run(group, primary, f"r{run}")
            times.append(took)
            print(f"docker business-4 alone, down_after_ms={args.down_after}, run {run}: docker kill of the primary "
                  f"-> the Sentinel client's first acknowledged write {took:.2f} s; {acked} writes acknowledged, "
                  f"{lost} lost", flush=True)
            tf("apply", "-auto-approve", "-input=false")
        print(f"docker business-4 alone, down_after_ms={args.down_after}: Sentinel client back in min "
              f"{min(times):.2f} s, median {statistics.median(times):.2f} s, max {max(times):.2f} s over "
              f"{len(times)} runs")
    finally:
        subprocess.run([TERRAFORM, "destroy", "-auto-approve", "-input=false"], cwd=work, env=env,
                       capture_output=True)


if __name__ == "__main__":
    main()
