terraform {
  required_providers {
    valkey = {
      source = "terraform.local/local/valkey"
    }
  }
}

resource "valkey_service" "primary" {
  name   = "orders"
  plan   = "startup-4"
  region = "local-1"
}

resource "valkey_read_replica" "eu" {
  name              = "orders-eu"
  primary_service   = valkey_service.primary.name # the reference orders create and destroy
  plan              = "startup-4"                 # the only plan read replicas are offered on
  region            = "local-2"
  failover_priority = 10 # promoted first if the primary fails
}

output "replica_uri" {
  value     = valkey_read_replica.eu.service_uri
  sensitive = true
}

output "replication" {
  # "up from 127.0.1.1:PORT"; replication_lag_bytes tells how far behind it is at each refresh.
  value = "${valkey_read_replica.eu.replication_status} from ${valkey_read_replica.eu.replicates_from}"
}
