# A Valkey service on the local cloud: a startup-4 primary in region local-1.
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

resource "valkey_service" "primary" {
  name   = "demo-primary"
  plan   = "startup-4"
  region = "local-1"

  valkey_user_config {
    maxmemory_policy = "allkeys-lru"
  }
}

output "host" {
  value = valkey_service.primary.host
}

output "port" {
  value = valkey_service.primary.port
}

output "service_uri" {
  value     = valkey_service.primary.service_uri
  sensitive = true
}
