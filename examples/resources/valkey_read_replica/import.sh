# A read replica is imported by its name.
terraform import valkey_read_replica.eu orders-eu
