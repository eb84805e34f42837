# A primary on two Docker hosts in one region, a read replica on a host in another region,
# watched by Sentinel. The hosts are the test engines `scripts/docker-hosts.sh up 6` starts on
# this machine: replace each url and advertise_address with your own engines, and build or
# load an image with valkey-server on each of them (docs/guides/docker.md says what it needs).
terraform {
  required_providers {
    valkey = {
      source = "terraform.local/local/valkey"
    }
  }
}

provider "valkey" {
  docker {
    image = "valkey-test:local"

    # Engines on their local sockets (or sockets forwarded from the hosts).
    region {
      name = "eu-west"
      hosts = [
        { url = "unix:///run/vk-docker-1.sock", advertise_address = "10.77.0.11" },
        { url = "unix:///run/vk-docker-2.sock", advertise_address = "10.77.0.12" },
      ]
    }

    # An engine over TCP with TLS and a client certificate (dockerd --tlsverify).
    region {
      name      = "us-east"
      hosts     = [{ url = "tcp://10.77.0.13:2376", advertise_address = "10.77.0.13" }]
      cert_path = "/run/vk-docker-tls/client"
    }
  }
}

resource "valkey_service" "orders" {
  name   = "orders-example"
  cloud  = "docker"
  plan   = "business-4" # two nodes: one on each eu-west host
  region = "eu-west"

  failover {
    down_after_ms = 2000
  }
}

resource "valkey_read_replica" "orders_us" {
  name            = "orders-example-us"
  cloud           = "docker"
  primary_service = valkey_service.orders.name
  plan            = "startup-4"
  region          = "us-east"
}

output "service_uri" {
  value     = valkey_service.orders.service_uri
  sensitive = true
}

output "replica_uri" {
  value     = valkey_read_replica.orders_us.service_uri
  sensitive = true
}

output "sentinels" {
  # The group's Sentinels start with its first replica, so the replica knows them at once;
  # the primary's own attribute shows them after its next refresh.
  description = "Give these to Sentinel-aware clients, with the group name and sentinel_password."
  value       = valkey_read_replica.orders_us.sentinel_addresses
}
