# A primary in one region with read replicas in two others, watched by Sentinel.
terraform {
  required_providers {
    valkey = {
      source = "terraform.local/local/valkey"
    }
  }
}

provider "valkey" {
  data_dir = "${path.module}/.valkey"
  regions = {
    "eu-west"  = "127.0.10.1"
    "us-east"  = "127.0.11.1"
    "ap-south" = "127.0.12.1"
  }
}

resource "valkey_service" "primary" {
  name   = "catalog"
  plan   = "startup-4"
  region = "eu-west"

  failover {
    down_after_ms = 2000
  }
}

resource "valkey_read_replica" "us" {
  name              = "catalog-us"
  primary_service   = valkey_service.primary.name
  plan              = "startup-4"
  region            = "us-east"
  failover_priority = 10
}

resource "valkey_read_replica" "ap" {
  name              = "catalog-ap"
  primary_service   = valkey_service.primary.name
  plan              = "startup-4"
  region            = "ap-south"
  failover_priority = 20
}

output "sentinels" {
  # The group's Sentinels start with its first replica, so the replicas know them at once;
  # the primary's own attribute shows them after its next refresh.
  description = "Give these to Sentinel-aware clients, with the group name and sentinel_password."
  value       = valkey_read_replica.us.sentinel_addresses
}

output "group_name" {
  value = valkey_service.primary.name
}

output "current_primary" {
  value = valkey_service.primary.current_primary
}
