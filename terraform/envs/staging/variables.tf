variable "environment" {
  type        = string
  description = "Environment name: resource names are tessera-<environment>-..."
  default     = "staging"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,7}$", var.environment))
    error_message = "environment: 2-8 lowercase letters or digits (it is part of every resource name, some limited to 32 characters)."
  }
}

variable "regions" {
  type        = list(string)
  description = "AWS regions Tessera serves from, the writer's home region FIRST (the NATS hub, the CockroachDB primary region, the Redis global datastore's primary, the writer). Staging runs one: production's wiring with no leaf connections; add a second to rehearse a multi-region change (docs/operations.md)."
  default     = ["us-east-1"]

  validation {
    condition     = length(var.regions) >= 1 && length(distinct(var.regions)) == length(var.regions) && alltrue([for r in var.regions : can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", r))])
    error_message = "regions: at least one AWS region name (e.g. eu-west-1), no repeats."
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

  validation {
    condition     = length(setsubtract(var.regions, keys(var.networks))) == 0
    error_message = "networks: one entry for every region in regions."
  }

  validation {
    condition = alltrue([
      for r, n in var.networks :
      can(regex("^vpc-[0-9a-f]{8,17}$", n.vpc_id)) &&
      can(cidrhost(n.vpc_cidr, 0)) &&
      length(n.private_subnet_ids) >= 2 && length(n.public_subnet_ids) >= 2 &&
      alltrue([for s in concat(n.private_subnet_ids, n.public_subnet_ids) : can(regex("^subnet-[0-9a-f]{8,17}$", s))]) &&
      length(n.nat_cidrs) > 0 && alltrue([for c in n.nat_cidrs : can(cidrhost(c, 0)) && can(regex("/", c))])
    ])
    error_message = "networks: vpc-… ids, a valid vpc_cidr, at least two private and two public subnet-… ids (load balancers span two zones), NAT addresses in CIDR notation (e.g. 203.0.113.10/32)."
  }
}

variable "dns_zone" {
  type = object({
    id   = string
    name = string
  })
  description = "Public Route 53 zone for every name Tessera uses: the fans' host name, the CDN's origin, the services' and NATS's names."

  validation {
    condition     = can(regex("^Z[0-9A-Z]{1,32}$", var.dns_zone.id)) && can(regex("^([a-z0-9]([a-z0-9-]*[a-z0-9])?\\.)+[a-z]{2,}\\.?$", var.dns_zone.name))
    error_message = "dns_zone: a Route 53 zone id (Z…) and its lowercase domain name."
  }
}

variable "public_hostname" {
  type        = string
  description = "The name fans use (the CDN), inside dns_zone, e.g. tickets.example.com."

  validation {
    condition     = endswith(var.public_hostname, ".${trimsuffix(var.dns_zone.name, ".")}") && can(regex("^[a-z0-9.-]+$", var.public_hostname))
    error_message = "public_hostname must be a lowercase name inside dns_zone.name."
  }
}

variable "image" {
  type        = string
  description = "Tessera's container image, pinned by digest (<registry>/<repository>@sha256:<64 hex>): the release pipeline's output. Every tier runs it."

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._/-]*@sha256:[0-9a-f]{64}$", var.image))
    error_message = "image must be pinned by digest: <registry>/<repository>@sha256:<64 lowercase hex digits>."
  }
}

variable "app_secret_names" {
  type = object({
    admin_key              = string
    edge_admin_key         = string
    admission_secret       = string
    edge_writer_credential = string
    stripe_api_key         = string
    stripe_webhook_secret  = string
    ticket_signing_keys    = string
    door_staff_keys        = string
  })
  description = "Secrets Manager names of the application secrets, one per purpose, created once and replicated to every region before the first apply (docs/operations.md, \"First deploy\"): TESSERA_ADMIN_KEY of the writer (admin_key: events, payments) and of the edges (edge_admin_key: the waiting rooms), TESSERA_ADMISSION_SECRET (the edges' waiting-room tickets and admission tokens), TESSERA_EDGE_WRITER_CREDENTIAL (the edges' writes to the writer), TESSERA_STRIPE_API_KEY and TESSERA_STRIPE_WEBHOOK_SECRET (the writer, when payment_provider is stripe), TESSERA_TICKET_SIGNING_KEYS (the writer's Ed25519 ticket keys, docs/tickets.md) and TESSERA_DOOR_STAFF_KEYS (the door staff's scan credentials, by name). Names only: the values never pass through Terraform."
  default = {
    admin_key              = "tessera/staging/admin-key"
    edge_admin_key         = "tessera/staging/edge-admin-key"
    admission_secret       = "tessera/staging/admission-secret"
    edge_writer_credential = "tessera/staging/edge-writer-credential"
    stripe_api_key         = "tessera/staging/stripe-api-key"
    stripe_webhook_secret  = "tessera/staging/stripe-webhook-secret"
    ticket_signing_keys    = "tessera/staging/ticket-signing-keys"
    door_staff_keys        = "tessera/staging/door-staff-keys"
  }

  validation {
    condition     = alltrue([for name in values(var.app_secret_names) : can(regex("^[A-Za-z0-9/_+=.@-]{1,512}$", name))]) && length(distinct(values(var.app_secret_names))) == 8
    error_message = "app_secret_names: Secrets Manager names (letters, digits, /_+=.@-), a different secret for each purpose."
  }
}

variable "identity" {
  type = object({
    jwks_url     = string
    jwt_issuer   = string
    jwt_audience = string
  })
  description = "The identity provider that signs fans' tokens (asymmetric keys, e.g. RS256/ES256; HS256 with a shared secret is for local development only): its JWKS URL (TESSERA_JWKS_URL), the issuer (TESSERA_JWT_ISSUER, the tokens' `iss`) and this API's audience (TESSERA_JWT_AUDIENCE, their `aud`). The writer, the read nodes and the edges verify with them."

  validation {
    condition     = can(regex("^https://[^\\s]+$", var.identity.jwks_url)) && can(regex("^https://[^\\s]+$", var.identity.jwt_issuer))
    error_message = "identity: jwks_url and jwt_issuer must be https:// URLs."
  }

  validation {
    condition     = can(regex("^[^\\s]{1,256}$", var.identity.jwt_audience))
    error_message = "identity: jwt_audience must be 1-256 characters without spaces."
  }
}

variable "production" {
  type        = bool
  description = "TESSERA_PRODUCTION for every tier: true refuses what is only for development (the sandbox payment provider, HS256 tokens, dev tokens). Staging keeps it false so the onsale simulator can pay with the sandbox's test tokens; set it (and payment_provider = stripe, with Stripe test-mode keys) to rehearse the production payment path."
  default     = false
}

variable "payment_provider" {
  type        = string
  description = "TESSERA_PAYMENT_PROVIDER of the writer: stripe (needs app_secret_names.stripe_*), or sandbox (no network, documented test tokens; never in production)."
  default     = "sandbox"

  validation {
    condition     = contains(["stripe", "sandbox"], var.payment_provider) && (!var.production || var.payment_provider == "stripe")
    error_message = "payment_provider must be stripe or sandbox, and stripe when production is true."
  }
}

variable "operator_cidrs" {
  type        = list(string)
  description = "Operators' networks (bastion, VPN) allowed to reach CockroachDB (`tessera audit`) and, from inside the VPCs, each region's internal edge listener (edge-admin.<region>.<zone>: the waiting room's admin API). The public edge load balancers accept CloudFront only."
  default     = []

  validation {
    condition     = alltrue([for c in var.operator_cidrs : can(cidrhost(c, 0)) && can(regex("/", c))])
    error_message = "operator_cidrs: CIDR notation (e.g. 198.51.100.0/24)."
  }
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
  description = "Task sizes and autoscaling bounds per tier (the same in every region), between onsales. For an announced onsale, list it in `onsales` instead of editing this: the floors rise and fall on schedule (docs/operations.md, \"Scale for an onsale\"). BENCHMARKS.md: a read node serves 19-24k seat-map req/s on 2 vCPU; one writer process commits 640-707 holds/s and one hot event runs on one writer process."
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

  validation {
    condition = alltrue([
      for tier in [var.capacity.writer, var.capacity.regional, var.capacity.edge] :
      contains([256, 512, 1024, 2048, 4096, 8192, 16384], tier.cpu) &&
      tier.memory >= 512 && tier.memory <= 122880 &&
      tier.min >= 1 && tier.max >= tier.min && tier.max <= 1000 &&
      tier.cpu_target_percent > 0 && tier.cpu_target_percent <= 90
    ]) && var.capacity.regional.requests_per_task_per_min > 0 && var.capacity.edge.requests_per_task_per_min > 0
    error_message = "capacity: Fargate cpu sizes (256-16384), 1 <= min <= max <= 1000, 0 < cpu_target_percent <= 90, requests_per_task_per_min > 0."
  }
}

variable "onsales" {
  type = list(object({
    name                     = string
    starts_at                = string
    scale_up_minutes_before  = optional(number, 60)
    duration_minutes         = number
    edge_min_tasks           = number
    edge_min_tasks_by_region = optional(map(number), {})
    regional_min_tasks       = number
  }))
  description = "Announced onsales: for each, from `scale_up_minutes_before` minutes before `starts_at` (RFC 3339 in UTC, e.g. 2027-01-10T10:00:00Z) until `duration_minutes` after it, every region keeps at least `edge_min_tasks` edges (or edge_min_tasks_by_region[region]) and `regional_min_tasks` read nodes; then the floors return to `capacity`. Scheduled in Application Auto Scaling, so they rise on time without an apply. docs/capacity.md sizes a 14-million-fan onsale: edges 118 / 70 / 47, read nodes 2 per region. Remove past onsales at the next deploy."
  default     = []

  validation {
    condition = alltrue([
      for o in var.onsales :
      can(regex("^[a-z0-9][a-z0-9-]{0,30}$", o.name)) &&
      can(regex("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$", o.starts_at)) && can(timeadd(o.starts_at, "1m"))
    ])
    error_message = "onsales: name of 1-31 lowercase letters, digits or '-'; starts_at in UTC as YYYY-MM-DDThh:mm:ssZ."
  }

  validation {
    condition = alltrue([
      for o in var.onsales :
      o.scale_up_minutes_before >= 15 && o.scale_up_minutes_before <= 1440 &&
      o.duration_minutes >= 10 && o.duration_minutes <= 2880 &&
      o.edge_min_tasks >= 1 && o.edge_min_tasks <= 1000 &&
      o.regional_min_tasks >= 1 && o.regional_min_tasks <= 1000 &&
      alltrue([for r, n in o.edge_min_tasks_by_region : contains(var.regions, r) && n >= 1 && n <= 1000])
    ])
    error_message = "onsales: scale_up_minutes_before 15-1440 (scaling out takes minutes), duration_minutes 10-2880, task floors 1-1000, edge_min_tasks_by_region keyed by regions of this environment."
  }

  validation {
    # One window's restore would otherwise drop the floors in the middle of another.
    condition = length(distinct([for o in var.onsales : o.name])) == length(var.onsales) && alltrue(flatten([
      for i, a in var.onsales : [
        for j, b in var.onsales :
        # Malformed times are the first validation's error, not this one's.
        i == j || try(
          timecmp(timeadd(a.starts_at, "${a.duration_minutes}m"), timeadd(b.starts_at, "-${b.scale_up_minutes_before}m")) <= 0 ||
          timecmp(timeadd(b.starts_at, "${b.duration_minutes}m"), timeadd(a.starts_at, "-${a.scale_up_minutes_before}m")) <= 0,
          true,
        )
      ]
    ]))
    error_message = "onsales: names must be unique and the windows (scale-up to end) must not overlap: merge onsales that are close together."
  }
}

variable "edge_rate_limits" {
  type        = string
  description = "TESSERA_RATE_LIMITS for the edges (JSON, docs/edge.md), or null for the edge's defaults. The holds/orders `fleet` budgets are per region: keep their sum over the regions within what the writer commits (docs/operations.md)."
  default     = null

  validation {
    condition     = var.edge_rate_limits == null || can(jsondecode(var.edge_rate_limits))
    error_message = "edge_rate_limits must be null or JSON."
  }
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

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.nats.instance_type)) && var.nats.volume_size_gib >= 20
    error_message = "nats: an EC2 instance type such as m7i.large and at least 20 GiB per node."
  }
}

variable "redis" {
  type = object({
    node_type          = string
    replicas_per_shard = number
    shards             = map(number)
  })
  description = "Valkey in cluster mode, every region: node type (r or m family: global datastores need them), replicas per shard, and shards per region (regions not listed get 1). docs/capacity.md: the waiting rooms' ticket polls of a 14-million-fan onsale need ~5 shards where half the fans are (the writer's home region); the other regions' edges need 1."
  default = {
    node_type          = "cache.r7g.large" # global datastores need r/m families, even for one region
    replicas_per_shard = 1
    shards             = {}
  }

  validation {
    condition     = alltrue([for r, n in var.redis.shards : contains(var.regions, r) && n >= 1 && n <= 90 && floor(n) == n]) && var.redis.replicas_per_shard >= 1 && var.redis.replicas_per_shard <= 5
    error_message = "redis: shards keyed by regions of this environment, 1-90 each; replicas_per_shard 1-5."
  }

  validation {
    condition     = can(regex("^cache\\.[rm][0-9]+[a-z]*\\.[0-9]*x?large$", var.redis.node_type))
    error_message = "redis.node_type must be an r or m family node type, e.g. cache.r7g.large."
  }
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

  validation {
    condition     = contains([2, 4, 8, 16, 32], var.database.num_virtual_cpus) && var.database.storage_gib >= 15 && var.database.nodes_per_region >= 3
    error_message = "database: 2, 4, 8, 16 or 32 vCPUs, at least 15 GiB and at least 3 nodes per region."
  }
}

variable "notifier" {
  type = object({
    enabled      = bool
    environment  = map(string)
    secret_names = map(string)
  })
  description = "The notifier tier (order e-mails and SMS, docs/architecture.md §6): off until it ships; its SMTP / webhook settings (environment) and their secrets (secret_names: env var -> secret name, e.g. TESSERA_NOTIFY_SMTP_PASSWORD)."
  default = {
    enabled      = false
    environment  = {}
    secret_names = {}
  }

  validation {
    condition     = alltrue([for name in keys(var.notifier.environment) : can(regex("^TESSERA_NOTIFY_[A-Z0-9_]+$", name)) && !can(regex("(SECRET|PASSWORD|TOKEN|CREDENTIAL|_KEY$)", name))])
    error_message = "notifier.environment: TESSERA_NOTIFY_* settings only; anything secret (…PASSWORD, …TOKEN, …) goes in notifier.secret_names."
  }
}

variable "alarm_emails" {
  type        = list(string)
  description = "Addresses subscribed to the alarm topics (the pager subscribes separately)."
  default     = []

  validation {
    condition     = alltrue([for e in var.alarm_emails : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", e))])
    error_message = "alarm_emails: e-mail addresses."
  }
}

variable "alarm_thresholds" {
  type = object({
    feed_lag_p99_s              = optional(number, 0.5)
    five_xx_percent             = optional(number, 1)
    hold_latency_p99_s          = optional(number, 0.5)
    mirror_lag_messages         = optional(number, 1000)
    mirror_idle_s               = optional(number, 60)
    outbox_unpublished          = optional(number, 1000)
    notifier_dead_letters       = optional(number, 0)
    payments_unsettled_oldest_s = optional(number, 900)
    redis_memory_percent        = optional(number, 80)
    redis_evictions             = optional(number, 0)
    tasks_below_desired_minutes = optional(number, 5)
  })
  description = "Alarm thresholds (the observability module documents the defaults)."
  default     = {}
}

variable "origin_secret_rotation_schedule" {
  type        = string
  description = "When the CDN's origin secret rotates (Secrets Manager schedule expression, UTC; default the first Tuesday of each month from 04:00, within 2 hours). A rotation redeploys every edge: move it if an onsale falls in the window (docs/operations.md)."
  default     = "cron(0 4 ? * 3#1 *)"

  validation {
    condition     = can(regex("^(cron|rate)\\(.+\\)$", var.origin_secret_rotation_schedule))
    error_message = "origin_secret_rotation_schedule must be a cron(...) or rate(...) expression."
  }
}
