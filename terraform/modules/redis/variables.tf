variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name, e.g. \"tessera-prod\"."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,15}$", var.name_prefix))
    error_message = "name_prefix: 2-16 lowercase letters, digits or '-' (replication group ids, <prefix>-<region>-replica, are limited to 40 characters)."
  }
}

variable "primary_region" {
  type        = string
  description = "The writer's home region: its replication group is the global datastore's primary (the writer's hold mirror, rate limits and waiting rooms, and the edges of that region)."

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.primary_region)) && contains(keys(var.regions), var.primary_region)
    error_message = "primary_region must be an AWS region name and one of the keys of regions."
  }
}

variable "regions" {
  type = map(object({
    vpc_id        = string
    subnet_ids    = list(string)
    allowed_cidrs = list(string)
    shards        = optional(number, 1)
  }))
  description = "Every region (primary included), keyed by AWS region name: VPC, private subnets of the cache nodes, the CIDRs of the services that connect (port 6379), and the shards (cluster-mode node groups) of the region's writable group: the global datastore's primary (and so its secondaries) in the primary region, the edges' local group elsewhere. docs/capacity.md: 5 where the waiting rooms of a 14-million-fan onsale poll, 1 for rate budgets alone."

  validation {
    condition = length(var.regions) > 0 && alltrue([
      for region, cfg in var.regions :
      can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", region)) &&
      length(cfg.subnet_ids) > 0 &&
      length(cfg.allowed_cidrs) > 0 && alltrue([for c in cfg.allowed_cidrs : can(cidrhost(c, 0))]) &&
      cfg.shards >= 1 && cfg.shards <= 90 && floor(cfg.shards) == cfg.shards
    ])
    error_message = "regions: keyed by AWS region name, each with subnets, valid allowed_cidrs and 1-90 shards."
  }
}

variable "node_type" {
  type        = string
  description = "Cache node type of every shard (global datastores need the r or m families, e.g. cache.r7g.large). docs/capacity.md sizes by scripts per second, not memory: the waiting rooms' keys are small."
  default     = "cache.r7g.large"

  validation {
    condition     = can(regex("^cache\\.[rm][0-9]+[a-z]*\\.[0-9]*x?large$", var.node_type))
    error_message = "node_type must be an r or m family node type (global datastores need them), e.g. cache.r7g.large."
  }
}

variable "replicas_per_shard" {
  type        = number
  description = "Read replicas per shard, in another availability zone (automatic failover needs at least 1)."
  default     = 1

  validation {
    condition     = var.replicas_per_shard >= 1 && var.replicas_per_shard <= 5 && floor(var.replicas_per_shard) == var.replicas_per_shard
    error_message = "replicas_per_shard must be 1 to 5."
  }
}

variable "engine_version" {
  type        = string
  description = "Valkey engine version (major.minor, 7.2 or later: global datastores and cluster mode)."
  default     = "8.0"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+$", var.engine_version)) && (tonumber(split(".", var.engine_version)[0]) >= 8 || var.engine_version == "7.2")
    error_message = "engine_version must be a Valkey version of 7.2 or later, written major.minor (e.g. 8.0)."
  }
}

variable "snapshot_retention_days" {
  type        = number
  description = "Daily snapshots kept. Nothing that decides a sale lives only in Valkey (docs/architecture.md §7.3), so this is for convenience, not durability."
  default     = 1

  validation {
    condition     = var.snapshot_retention_days >= 0 && var.snapshot_retention_days <= 35
    error_message = "snapshot_retention_days must be 0 to 35."
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
