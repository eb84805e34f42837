# A service is imported by its name.
terraform import valkey_service.cache cache
