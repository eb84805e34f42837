variable "name" {
  description = "Name of the primary service; replicas are named NAME-REGION."
  type        = string
}

variable "plan" {
  description = "Plan of the primary service."
  type        = string
  default     = "startup-4"
}

variable "region" {
  description = "Region of the primary."
  type        = string
}

variable "replica_regions" {
  description = "One read replica in each of these regions (at most 5)."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.replica_regions) <= 5
    error_message = "A primary can have at most 5 read replicas."
  }
}

variable "down_after_ms" {
  description = "How long the primary may be unreachable before a replica is promoted."
  type        = number
  default     = 5000
}
