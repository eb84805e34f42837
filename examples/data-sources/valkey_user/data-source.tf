terraform {
  required_providers {
    valkey = {
      source = "terraform.local/local/valkey"
    }
  }
}

data "valkey_user" "reporting" {
  service          = "shop"
  username         = "reporting"
  include_password = true # else password is null
}

output "reporting_rules" {
  value = data.valkey_user.reporting.acl_rules
}

output "reporting_password" {
  value     = data.valkey_user.reporting.password
  sensitive = true
}
