# A primary service with one read replica per region in var.replica_regions.
terraform {
  required_providers {
    valkey = {
      source = "terraform.local/local/valkey"
    }
  }
}

resource "valkey_service" "primary" {
  name   = var.name
  plan   = var.plan
  region = var.region

  failover {
    down_after_ms = var.down_after_ms
  }
}

resource "valkey_read_replica" "replica" {
  for_each = toset(var.replica_regions)

  name              = "${var.name}-${each.key}"
  primary_service   = valkey_service.primary.name
  plan              = "startup-4"
  region            = each.key
  failover_priority = 10 + index(var.replica_regions, each.key)
}
