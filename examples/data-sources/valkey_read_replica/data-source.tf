terraform {
  required_providers {
    valkey = {
      source = "terraform.local/local/valkey"
    }
  }
}

data "valkey_read_replica" "eu" {
  name = "shop-eu"
}

output "replication" {
  value = "${data.valkey_read_replica.eu.replication_status} from ${data.valkey_read_replica.eu.replicates_from}"
}
