#!/usr/bin/env python3
"""The docker cloud's apply next to doing the same by hand through the Engine API.

On the three test engines of scripts/docker-hosts.sh (started if missing), prints the apply of
a primary (region-a) and 5 read replicas (2 in region-a, 3 in region-b) until every link is up,
median of 5, against a hand-made floor: the same 6 containers created and started through the
Engine API (plain HTTP on the engines' sockets), REPLICAOF from a client, links waited for,
plus Terraform's own overhead (apply of 6 terraform_data). The provider also starts the
group's 3 Sentinels, which the floor does not.
"""
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import valkey

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from failover import REPO, TERRAFORM, setup  # noqa: E402
from suite import timed, wait_linked  # noqa: E402

HOSTS = [("/run/vk-docker-1.sock", "10.77.0.11"), ("/run/vk-docker-2.sock", "10.77.0.12"),
         ("/run/vk-docker-3.sock", "10.77.0.13")]
IMAGE = "valkey-test:local"


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def api(sock, method, url, body=None):
    conn = UnixHTTP(sock)
    conn.request(method, url, body=json.dumps(body) if body is not None else None,
                 headers={"Content-Type": "application/json"})
    reply = conn.getresponse()
    data = reply.read()
    if reply.status >= 300:
        raise SystemExit(f"{method} {url}: {reply.status} {data[:200]!r}")
    return json.loads(data) if data else None


def by_hand(tag):
    """The floor: 6 containers made and started through the API, then REPLICAOF and links."""
    placed = [HOSTS[0], HOSTS[0], HOSTS[1], HOSTS[2], HOSTS[2], HOSTS[2]]
    nodes = []
    try:
        for i, (sock, addr) in enumerate(placed):
            port = random.randrange(30000, 40000)
            name = f"bench-{tag}-{i}"
            api(sock, "POST", f"/containers/create?name={name}", {
                "Image": IMAGE, "User": "999:999",
                "Cmd": ["/usr/local/bin/valkey-server", "--port", str(port), "--dir", "/data", "--save", "",
                        "--requirepass", "pw", "--masterauth", "pw", "--repl-diskless-sync", "yes",
                        "--repl-diskless-sync-delay", "0", "--replica-announce-ip", addr,
                        "--replica-announce-port", str(port)],
                "ExposedPorts": {f"{port}/tcp": {}},
                "HostConfig": {"PortBindings": {f"{port}/tcp": [{"HostIp": addr, "HostPort": str(port)}]}},
            })
            api(sock, "POST", f"/containers/{name}/start")
            nodes.append((sock, name, addr, port))
        conns = []
        for _, _, addr, port in nodes:
            while True:
                try:
                    c = valkey.Valkey(host=addr, port=port, password="pw", socket_timeout=1)
                    c.ping()
                    conns.append(c)
                    break
                except Exception:
                    time.sleep(0.005)
        primary = nodes[0]
        for c in conns[1:]:
            c.replicaof(primary[2], primary[3])
        wait_linked(conns[1:])
    finally:
        for sock, name, _, _ in nodes:
            api(sock, "DELETE", f"/containers/{name}?force=1&v=1")


def provider_block():
    regions = {"region-a": HOSTS[:2], "region-b": HOSTS[2:]}
    text = f'provider "valkey" {{\n  data_dir = "data"\n  docker {{\n    image = "{IMAGE}"\n'
    for name, hosts in regions.items():
        listed = ", ".join(f'{{ url = "unix://{s}", advertise_address = "{a}" }}' for s, a in hosts)
        text += f'    region {{\n      name  = "{name}"\n      hosts = [{listed}]\n    }}\n'
    return text + "  }\n}\n"


def group(tag):
    body = f'resource "valkey_service" "main" {{\n  name = "bm-{tag}"\n  cloud = "docker"\n' \
           f'  plan = "startup-4"\n  region = "region-a"\n}}\n'
    for i, region in enumerate(["region-a", "region-a", "region-b", "region-b", "region-b"]):
        body += (f'resource "valkey_read_replica" "r{i}" {{\n  name = "br{i}-{tag}"\n  cloud = "docker"\n'
                 f'  primary_service = valkey_service.main.name\n  plan = "startup-4"\n  region = "{region}"\n}}\n')
    return body


def main():
    subprocess.run([os.path.join(REPO, "scripts/docker-hosts.sh"), "ensure", "3"], check=True,
                   stdout=subprocess.DEVNULL)
    work = tempfile.mkdtemp(prefix="bench-docker-")
    env = setup(work)
    header = 'terraform {\n  required_providers {\n    valkey = { source = "terraform.local/local/valkey" }\n  }\n}\n'

    def tf(*args):
        subprocess.run([TERRAFORM, *args, "-no-color"], cwd=work, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def write(body):
        with open(os.path.join(work, "main.tf"), "w") as f:
            f.write(header + provider_block() + body)

    def median_apply():
        """Applies and destroys 5 times; the apply times' median, min and max."""
        samples = []
        for _ in range(5):
            start = time.perf_counter()
            tf("apply", "-auto-approve", "-input=false")
            samples.append(time.perf_counter() - start)
            tf("destroy", "-auto-approve", "-input=false")
        return statistics.median(samples), min(samples), max(samples)

    tag = "".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(5))
    write(group(tag))
    tf("init", "-input=false")
    provider, fastest, slowest = median_apply()
    # Each run removes its containers before the next, so they may reuse the names.
    floor, _, _ = timed(lambda: by_hand(tag))
    write('resource "terraform_data" "x" {\n  count = 6\n  input = count.index\n}\n')
    overhead, _, _ = median_apply()
    print(f"docker: apply primary + 5 replicas on 3 engines until linked: provider {provider:.3f} s "
          f"(median of 5, min {fastest:.3f}, max {slowest:.3f}; with the group's 3 Sentinels); "
          f"by hand through the Engine API {floor:.3f} s (median of 5); terraform_data x6 apply {overhead:.3f} s; "
          f"ratio provider / (by hand + terraform) = {provider / (floor + overhead):.2f} (goal <= 1.5)")


if __name__ == "__main__":
    main()
