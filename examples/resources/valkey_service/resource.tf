terraform {
  required_providers {
    valkey = {
      source = "terraform.local/local/valkey"
    }
  }
}

resource "valkey_service" "cache" {
  name   = "cache"
  plan   = "business-4" # a primary and a standby node
  region = "local-1"

  valkey_user_config {
    maxmemory_policy = "allkeys-lru"
    timeout          = 300
    persistence      = "rdb"
  }

  failover {
    down_after_ms = 5000
  }

  termination_protection = false

  timeouts {
    create = "10m"
  }
}

output "cache_uri" {
  value     = valkey_service.cache.service_uri
  sensitive = true
}
