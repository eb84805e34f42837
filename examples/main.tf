# A Valkey service on the local cloud with a read replica in another region.
# `make demo` applies this directory with the provider built from this repository.

terraform {
  required_providers {
    valkey = {
      source = "terraform.local/local/valkey"
    }
  }
}

provider "valkey" {
  # Nodes keep their config, data and logs here.
  data_dir = "${path.module}/.valkey"
}

# The primary takes reads and writes.
resource "valkey_service" "primary" {
  name   = "demo-primary"
  plan   = "startup-4"
  region = "local-1"

  valkey_user_config {
    maxmemory_policy = "allkeys-lru"
  }
}

# The replica copies the primary asynchronously and serves reads close to its users.
resource "valkey_read_replica" "replica" {
  name            = "demo-replica"
  primary_service = valkey_service.primary.name
  plan            = "startup-4"
  region          = "local-2"
}

output "service_uri" {
  value     = valkey_service.primary.service_uri
  sensitive = true
}

output "replica_uri" {
  value     = valkey_read_replica.replica.service_uri
  sensitive = true
}

output "replication_status" {
  value = valkey_read_replica.replica.replication_status
}
