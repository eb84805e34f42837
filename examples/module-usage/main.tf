# Uses the primary-with-replicas module: one primary, two replicas.
terraform {
  required_providers {
    valkey = {
      source = "terraform.local/local/valkey"
    }
  }
}

module "sessions" {
  source = "../modules/primary-with-replicas"

  name            = "sessions"
  region          = "local-1"
  replica_regions = ["local-2", "local-3"]
}

output "replica_uris" {
  value     = module.sessions.replica_uris
  sensitive = true
}
