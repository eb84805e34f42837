terraform {
  required_providers {
    valkey = {
      source = "terraform.local/local/valkey"
    }
  }
}

# A service another configuration manages, read by name.
data "valkey_service" "shop" {
  name = "shop"
}

output "sentinels" {
  value = data.valkey_service.shop.sentinel_addresses
}

output "version" {
  value = data.valkey_service.shop.valkey_version
}

output "uri" {
  value     = data.valkey_service.shop.service_uri
  sensitive = true
}
