terraform {
  required_providers {
    valkey = {
      source = "terraform.local/local/valkey"
    }
  }
}

# Ephemeral: Terraform passes it to write-only arguments and keeps it nowhere.
# Give it with TF_VAR_app_password, or -var at plan and apply.
variable "app_password" {
  type      = string
  sensitive = true
  ephemeral = true
  default   = "change-me-Example-1"
}

resource "valkey_service" "primary" {
  name   = "shop"
  plan   = "startup-4"
  region = "local-1"
}

resource "valkey_read_replica" "eu" {
  name            = "shop-eu"
  primary_service = valkey_service.primary.name
  plan            = "startup-4"
  region          = "local-2"
}

# On every member of the group, the read replica included.
resource "valkey_user" "app" {
  service             = valkey_service.primary.name
  username            = "app"
  password_wo         = var.app_password
  password_wo_version = 1 # change it whenever app_password changes
  keys                = ["cart:*", "session:*"]
  channels            = ["orders:*"]
  categories          = ["+@read", "+@write", "+@connection", "-@dangerous"]
}

# A generated password, in state (sensitive): for tools that read it from Terraform.
resource "valkey_user" "reporting" {
  service    = valkey_service.primary.name
  username   = "reporting"
  keys       = ["*"]
  categories = ["+@read", "+@connection"]
  commands   = ["-keys"]
}

output "reporting_password" {
  value     = valkey_user.reporting.password
  sensitive = true
}
