variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name, e.g. \"tessera-prod\"."
}

variable "primary_region" {
  type        = string
  description = "The writer's home region: its replication group is the global datastore's primary (the writer's hold mirror, rate limits and waiting rooms, and the edges of that region)."
}

variable "regions" {
  type = map(object({
    vpc_id        = string
    subnet_ids    = list(string)
    allowed_cidrs = list(string)
  }))
  description = "Every region (primary included), keyed by AWS region name: VPC, private subnets of the cache nodes, and the CIDRs of the services that connect (port 6379)."
}

variable "node_type" {
  type        = string
  description = "Cache node type (global datastores need r/m families)."
  default     = "cache.r7g.large"
}

variable "replicas_per_group" {
  type        = number
  description = "Read replicas per replication group (automatic failover across availability zones needs at least 1)."
  default     = 1

  validation {
    condition     = var.replicas_per_group >= 1 && var.replicas_per_group <= 5
    error_message = "replicas_per_group must be 1 to 5."
  }
}

variable "engine_version" {
  type        = string
  description = "Redis OSS engine version (global datastores: 5.0.6 or later)."
  default     = "7.1"
}

variable "snapshot_retention_days" {
  type        = number
  description = "Daily snapshots kept. Nothing that decides a sale lives only in Redis (ARCHITECTURE.md §3), so this is for convenience, not durability."
  default     = 1
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
