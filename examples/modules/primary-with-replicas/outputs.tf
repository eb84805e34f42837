output "primary_uri" {
  value     = valkey_service.primary.service_uri
  sensitive = true
}

output "replica_uris" {
  value     = { for region, r in valkey_read_replica.replica : region => r.service_uri }
  sensitive = true
}

output "sentinel_addresses" {
  # Known to the replicas as soon as they exist; empty without replicas.
  value = length(valkey_read_replica.replica) > 0 ? values(valkey_read_replica.replica)[0].sentinel_addresses : []
}
