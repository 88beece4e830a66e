variable "environment" {
  type        = string
  description = "Environment name: resource names are tessera-<environment>-..."
  default     = "staging"
}

variable "regions" {
  type        = list(string)
  description = "AWS regions Tessera serves from, the writer's home region FIRST (the NATS hub, the CockroachDB primary region, the Redis global datastore's primary, the writer). Staging runs one: production's wiring with no leaf connections; add a second to rehearse a multi-region change (docs/operations.md)."
  default     = ["us-east-1"]

  validation {
    condition     = length(var.regions) >= 1 && length(distinct(var.regions)) == length(var.regions)
    error_message = "regions: at least one, no repeats."
  }
}

variable "networks" {
  type = map(object({
    vpc_id             = string
    vpc_cidr           = string
    private_subnet_ids = list(string)
    public_subnet_ids  = list(string)
    nat_cidrs          = list(string)
  }))
  description = "Per region (every entry of `regions`), the existing network: VPC and its CIDR, private subnets (tasks, NATS, Redis; one per availability zone, three), public subnets (the edge load balancer) and the NAT gateways' public addresses as /32 (allowed to reach CockroachDB). The VPCs must be peered (or joined by a transit gateway) so the regions reach the hub's NATS leaf port and the writer."
}

variable "dns_zone" {
  type = object({
    id   = string
    name = string
  })
  description = "Public Route 53 zone for every name Tessera uses: the fans' host name, the CDN's origin, the services' and NATS's names."
}

variable "public_hostname" {
  type        = string
  description = "The name fans use (the CDN), inside dns_zone, e.g. tickets.example.com."
}

variable "image" {
  type        = string
  description = "Tessera's container image, pinned by digest (repo@sha256:...): the release pipeline's output. Every tier runs it."
}

variable "app_secret_names" {
  type = object({
    jwt_secret  = string
    admin_key   = string
    edge_secret = string
  })
  description = "Secrets Manager names of the application secrets, created once and replicated to every region before the first apply (docs/operations.md, \"First deploy\"): TESSERA_JWT_SECRET, TESSERA_ADMIN_KEY, TESSERA_EDGE_SECRET (each at least 32 characters)."
  default = {
    jwt_secret  = "tessera/staging/jwt-secret"
    admin_key   = "tessera/staging/admin-key"
    edge_secret = "tessera/staging/edge-secret"
  }
}

variable "operator_cidrs" {
  type        = list(string)
  description = "Operators' networks (bastion, VPN egress) allowed to reach CockroachDB (`tessera audit`) and each region's edge load balancer directly (the waiting room's admin API)."
  default     = []
}

variable "capacity" {
  type = object({
    writer = object({
      cpu                = number
      memory             = number
      min                = number
      max                = number
      cpu_target_percent = number
    })
    regional = object({
      cpu                       = number
      memory                    = number
      min                       = number
      max                       = number
      cpu_target_percent        = number
      requests_per_task_per_min = number
    })
    edge = object({
      cpu                       = number
      memory                    = number
      min                       = number
      max                       = number
      cpu_target_percent        = number
      requests_per_task_per_min = number
    })
  })
  description = "Task sizes and autoscaling bounds per tier (the same in every region). Before an onsale raise `min` to the expected peak (docs/operations.md, \"Scale for an onsale\"): scaling out takes minutes, an onsale peaks in seconds. BENCHMARKS.md: a read node serves 19-24k seat-map req/s on 2 vCPU; one writer process commits 640-707 holds/s and one hot event runs on one writer process."
  default = {
    writer = {
      cpu                = 1024
      memory             = 2048
      min                = 1
      max                = 2
      cpu_target_percent = 60
    }
    regional = {
      cpu                       = 1024
      memory                    = 2048
      min                       = 1
      max                       = 4
      cpu_target_percent        = 60
      requests_per_task_per_min = 300000
    }
    edge = {
      cpu                       = 1024
      memory                    = 2048
      min                       = 1
      max                       = 6
      cpu_target_percent        = 60
      requests_per_task_per_min = 150000
    }
  }
}

variable "edge_rate_limits" {
  type        = string
  description = "TESSERA_RATE_LIMITS for the edges (JSON, docs/edge.md), or null for the edge's defaults. The holds/orders `fleet` budgets are per region: keep their sum over the regions within what the writer commits (docs/operations.md)."
  default     = null
}

variable "nats" {
  type = object({
    instance_type   = string
    volume_size_gib = number
  })
  description = "NATS nodes (three per region)."
  default = {
    instance_type   = "t3.medium"
    volume_size_gib = 50
  }
}

variable "redis_node_type" {
  type        = string
  description = "ElastiCache node type of every Redis replication group."
  default     = "cache.r7g.large" # global datastores need r/m families, even for one region
}

variable "database" {
  type = object({
    num_virtual_cpus = number
    storage_gib      = number
    nodes_per_region = number
  })
  description = "CockroachDB nodes: vCPUs and storage per node, nodes per region."
  default = {
    num_virtual_cpus = 4
    storage_gib      = 50
    nodes_per_region = 3
  }
}

variable "notifier" {
  type = object({
    enabled      = bool
    environment  = map(string)
    secret_names = map(string)
  })
  description = "The notifier tier (order e-mails and SMS, ARCHITECTURE.md §6): off until it ships; its SMTP / webhook settings (environment) and their secrets (secret_names: env var -> secret name)."
  default = {
    enabled      = false
    environment  = {}
    secret_names = {}
  }
}

variable "alarm_emails" {
  type        = list(string)
  description = "Addresses subscribed to the alarm topics (the pager subscribes separately)."
  default     = []
}

variable "alarm_thresholds" {
  type = object({
    feed_lag_p99_s      = optional(number, 0.5)
    five_xx_percent     = optional(number, 1)
    hold_latency_p99_s  = optional(number, 0.5)
    mirror_lag_messages = optional(number, 1000)
    mirror_idle_s       = optional(number, 60)
  })
  description = "Alarm thresholds (the observability module documents the defaults)."
  default     = {}
}
