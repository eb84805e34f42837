# A user is imported as SERVICE/USERNAME. A write-only password cannot be read back: set
# password_wo and a new password_wo_version, and the next apply gives the user that password.
terraform import valkey_user.reporting shop/reporting
