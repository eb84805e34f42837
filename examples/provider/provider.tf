terraform {
  required_providers {
    valkey = {
      source = "terraform.local/local/valkey"
    }
  }
}

provider "valkey" {
  # Where the local runtime keeps node configs, data and logs (created with mode 0700).
  data_dir = "${path.module}/.valkey"

  # Optional: the valkey-server binary. Without it, VALKEY_SERVER, then PATH.
  # valkey_server = "/opt/valkey/bin/valkey-server"

  # Optional: regions besides local-1 .. local-6, each with its own address.
  regions = {
    "eu-west" = "127.0.10.1"
  }
}
