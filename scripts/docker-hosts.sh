#!/usr/bin/env bash
# Docker Engines as separate hosts, for the docker cloud's tests: `up N` makes N network
# namespaces vkhost1..N on one bridge (host i at 10.77.0.(10+i), the bridge at 10.77.0.1),
# starts a dockerd in each (its own data root, exec root, socket /run/vk-docker-i.sock and
# bridge subnet 172.30.i.0/24, no iptables: its userland proxy publishes ports), routes each
# host's container subnet to it, and imports the test image `valkey-test:local` into every
# engine from the valkey-server binary and the shared libraries it needs, and into hosts 1 to 3
# the TLS test image `valkey-tls-test:local`: Debian 13's root filesystem that
# scripts/valkey-tls.sh makes, a Debian-based Valkey 8.1 image with TLS. `down` undoes all of
# it; `ensure N` brings them up unless all N answer already. Each engine also listens on
# tcp://<host address>:2376 with TLS and client certificates (dockerd --tlsverify), from a test
# CA made here: the client's ca.pem, cert.pem and key.pem are in /run/vk-docker-tls/client.
# Each host also runs an sshd on <host address>:22 (Debian's openssh-server, installed when
# missing) whose sessions reach that host's engine, for ssh:// engine urls: the key is in
# /run/vk-docker-ssh, and /etc/ssh/ssh_config.d/vk-test-hosts.conf tells ssh to use it.
# `engine stop I` / `engine start I` stop and start host I's engine, as a host that goes down
# and comes back. Installs Debian's docker.io when dockerd is missing. Needs root.
set -euo pipefail

BRIDGE=vkbr0
IMAGE=valkey-test:local
TLS_IMAGE=valkey-tls-test:local
TLS_IMAGE_HOSTS=3
STATE=/run/vk-docker
TLS=/run/vk-docker-tls
SSH=/run/vk-docker-ssh
SSH_CLIENT_CONFIG=/etc/ssh/ssh_config.d/vk-test-hosts.conf

host_ip() { echo "10.77.0.$((10 + $1))"; }

down() {
  local pids=()
  for pidfile in "$STATE"-*.pid; do
    [ -e "$pidfile" ] && pids+=("$(cat "$pidfile" 2>/dev/null || true)")
  done
  for pid in "${pids[@]}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
  # dockerd stops its containers on the way out; give it up to 20 s, then end it.
  for _ in $(seq 1 200); do
    local alive=0
    for pid in "${pids[@]}"; do [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true; done
  for i in $(seq 1 9); do
    ip netns del "vkhost$i" 2>/dev/null || true
    ip link del "vkh$i" 2>/dev/null || true
    ip route del "172.30.$i.0/24" 2>/dev/null || true
    rm -rf "/var/lib/vk-docker-$i" "$STATE-$i" "$STATE-$i.pid" "$STATE-$i.sock" "$STATE-$i.log" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  for pidfile in "$SSH"/sshd-*.pid; do
    [ -e "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  rm -rf "$TLS" "$SSH" "$SSH_CLIENT_CONFIG"
}

# An sshd per host whose sessions talk to that host's engine (`docker system dial-stdio`, as
# ssh:// engine urls use it), and the client configuration for the hosts' addresses.
ssh_servers() {
  local count="$1" hosts=""
  [ -x /usr/sbin/sshd ] || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null
  }
  mkdir -p "$SSH" /run/sshd /etc/ssh/ssh_config.d
  ssh-keygen -q -t ed25519 -N '' -f "$SSH/id"
  ssh-keygen -q -t ed25519 -N '' -f "$SSH/host_key"
  for i in $(seq 1 "$count"); do
    cat >"$SSH/sshd-$i.conf" <<CONF
ListenAddress $(host_ip "$i")
HostKey $SSH/host_key
PidFile $SSH/sshd-$i.pid
AuthorizedKeysFile $SSH/id.pub
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
SetEnv DOCKER_HOST=unix://$STATE-$i.sock
# Below the defaults (10 each), so that a provider logging in more than once at a time, or
# opening more sessions than it promises (docs/guides/docker.md), is refused here on every
# run, not on a busy machine now and then.
MaxStartups 2
MaxSessions 8
CONF
    nsenter --net="/var/run/netns/vkhost$i" /usr/sbin/sshd -f "$SSH/sshd-$i.conf"
    hosts="$hosts $(host_ip "$i")"
  done
  cat >"$SSH_CLIENT_CONFIG" <<CONF
# Written by terraform-provider-valkey's scripts/docker-hosts.sh for its test hosts.
Host$hosts
  IdentityFile $SSH/id
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
CONF
}

# A certificate signed by the test CA: `sign NAME SUBJECT-ALT-NAME EXTENDED-KEY-USAGE`.
sign() {
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$1" \
    -keyout "$TLS/$1-key.pem" -out "$TLS/$1.csr" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' "$2" "$3" >"$TLS/$1.ext"
  openssl x509 -req -in "$TLS/$1.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca-key.pem" -CAcreateserial \
    -days 30 -extfile "$TLS/$1.ext" -out "$TLS/$1.pem" 2>/dev/null
}

certificates() {
  local count="$1"
  mkdir -p "$TLS/client"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=vk-test-ca" \
    -days 30 -keyout "$TLS/ca-key.pem" -out "$TLS/ca.pem" 2>/dev/null
  for i in $(seq 1 "$count"); do sign "server-$i" "IP:$(host_ip "$i")" serverAuth; done
  sign client "DNS:client" clientAuth
  cp "$TLS/ca.pem" "$TLS/client/ca.pem"
  cp "$TLS/client.pem" "$TLS/client/cert.pem"
  cp "$TLS/client-key.pem" "$TLS/client/key.pem"
}

image_tar() {
  local server="$1" root
  root="$(mktemp -d)"
  mkdir -p "$root/usr/local/bin" "$root/data" "$root/etc"
  cp "$server" "$root/usr/local/bin/valkey-server"
  ldd "$server" | grep -o '/[^ ]*' | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  echo 'valkey:x:999:999::/data:/usr/sbin/nologin' > "$root/etc/passwd"
  echo 'valkey:x:999:' > "$root/etc/group"
  chown 999:999 "$root/data"
  tar -C "$root" -cf "$root.tar" .
  rm -rf "$root"
  echo "$root.tar"
}

# The TLS test image from the trixie root: valkey-server where the runtime runs it, and /data
# for the node user (uid 999) the runtime runs containers as.
tls_image_tar() {
  local root copy
  root="$("$(dirname "$0")/valkey-tls.sh")"
  root="${root%.valkey-server}"
  copy="$(mktemp -d)"
  cp -a "$root/." "$copy/"
  mkdir -p "$copy/usr/local/bin" "$copy/data"
  ln -sf /usr/bin/valkey-server "$copy/usr/local/bin/valkey-server"
  echo 'vknode:x:999:999::/data:/usr/sbin/nologin' >> "$copy/etc/passwd"
  echo 'vknode:x:999:' >> "$copy/etc/group"
  chown 999:999 "$copy/data"
  tar -C "$copy" -cf "$copy.tar" .
  rm -rf "$copy"
  echo "$copy.tar"
}

up() {
  local count="$1"
  command -v dockerd >/dev/null 2>&1 || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
  }
  down
  sysctl -qw net.ipv4.ip_forward=1
  ip link add "$BRIDGE" type bridge
  ip addr add 10.77.0.1/24 dev "$BRIDGE"
  ip link set "$BRIDGE" up
  for i in $(seq 1 "$count"); do
    ip netns add "vkhost$i"
    ip link add "vkh$i" type veth peer name eth0 netns "vkhost$i"
    ip link set "vkh$i" master "$BRIDGE" up
    ip -n "vkhost$i" addr add "$(host_ip "$i")/24" dev eth0
    ip -n "vkhost$i" link set eth0 up
    ip -n "vkhost$i" link set lo up
    ip -n "vkhost$i" route add default via 10.77.0.1
    ip netns exec "vkhost$i" sysctl -qw net.ipv4.ip_forward=1
  done
  # Containers leave their host with their own address (no NAT without iptables): every host,
  # and this one, routes each container subnet to the host it lives on.
  for i in $(seq 1 "$count"); do
    ip route replace "172.30.$i.0/24" via "$(host_ip "$i")"
    for j in $(seq 1 "$count"); do
      [ "$i" = "$j" ] || ip -n "vkhost$j" route replace "172.30.$i.0/24" via "$(host_ip "$i")"
    done
  done
  certificates "$count"
  ssh_servers "$count"
  for i in $(seq 1 "$count"); do start_engine "$i"; done
  local tar
  tar="$(image_tar "${VALKEY_SERVER:-$("$(dirname "$0")/valkey-server-path.sh")}")"
  for i in $(seq 1 "$count"); do
    for _ in $(seq 1 100); do
      docker -H "unix://$STATE-$i.sock" version >/dev/null 2>&1 && break
      sleep 0.1
    done
    docker -H "unix://$STATE-$i.sock" import "$tar" "$IMAGE" >/dev/null
  done
  rm -f "$tar"
  tar="$(tls_image_tar)"
  for i in $(seq 1 "$(( count < TLS_IMAGE_HOSTS ? count : TLS_IMAGE_HOSTS ))"); do
    docker -H "unix://$STATE-$i.sock" import "$tar" "$TLS_IMAGE" >/dev/null
  done
  rm -f "$tar"
  for i in $(seq 1 "$count"); do
    echo "vkhost$i $(host_ip "$i") unix://$STATE-$i.sock tcp://$(host_ip "$i"):2376"
  done
}

# Starts host i's engine in its namespace (its data root, containers and images kept).
start_engine() {
  local i="$1"
  mkdir -p "$STATE-$i"
  # `ip netns exec` remounts /sys, and dockerd then finds no devices cgroup: enter only the
  # network namespace.
  nsenter --net="/var/run/netns/vkhost$i" dockerd --iptables=false --ip6tables=false \
    --data-root "/var/lib/vk-docker-$i" --exec-root "$STATE-$i" -H "unix://$STATE-$i.sock" \
    -H "tcp://$(host_ip "$i"):2376" --tlsverify --tlscacert "$TLS/ca.pem" \
    --tlscert "$TLS/server-$i.pem" --tlskey "$TLS/server-$i-key.pem" \
    --pidfile "$STATE-$i.pid" --bip "172.30.$i.1/24" >>"$STATE-$i.log" 2>&1 &
}

# Stops host i's engine as a host shutting down would (dockerd stops its containers), or
# starts it again and waits until it answers.
engine() {
  local action="$1" i="$2" pid
  case "$action" in
    stop)
      pid="$(cat "$STATE-$i.pid")"
      kill "$pid"
      for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
      echo "engine $i did not stop" >&2; return 1 ;;
    start)
      start_engine "$i"
      for _ in $(seq 1 300); do
        docker -H "unix://$STATE-$i.sock" version >/dev/null 2>&1 && return 0
        sleep 0.1
      done
      echo "engine $i did not start" >&2; return 1 ;;
  esac
}

answering() {
  for i in $(seq 1 "$1"); do
    docker -H "unix://$STATE-$i.sock" image inspect "$IMAGE" >/dev/null 2>&1 || return 1
  done
  for i in $(seq 1 "$(( $1 < TLS_IMAGE_HOSTS ? $1 : TLS_IMAGE_HOSTS ))"); do
    docker -H "unix://$STATE-$i.sock" image inspect "$TLS_IMAGE" >/dev/null 2>&1 || return 1
  done
}

case "${1:-}" in
  up) up "${2:-3}" ;;
  ensure) answering "${2:-3}" || up "${2:-3}" ;;
  down) down ;;
  engine) engine "$2" "$3" ;;
  *) echo "usage: $0 up [N] | ensure [N] | down | engine stop|start I" >&2; exit 2 ;;
esac
