variable "name" {
  type        = string
  description = "Name of this service in this region, e.g. \"tessera-prod-edge-eu-west-1\" (ECS cluster, service, load balancer, log group)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,60}$", var.name))
    error_message = "name: 2-61 lowercase letters, digits or '-', starting with a letter."
  }
}

variable "tier" {
  type        = string
  description = "Which Tessera tier runs: writer (python -m global_writer), regional (python -m regional), edge (python -m edge) or notifier (python -m notifier)."

  validation {
    condition     = contains(["writer", "regional", "edge", "notifier"], var.tier)
    error_message = "tier must be writer, regional, edge or notifier."
  }
}

variable "region" {
  type        = string
  description = "AWS region the service runs in (also its TESSERA_REGION)."

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as eu-west-1."
  }
}

variable "image" {
  type        = string
  description = "Container image of Tessera (the repository built with its nats/ folder at /app/nats), pinned by digest: <registry>/<repository>@sha256:<64 hex digits>. A tag could move under a running service."

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._/-]*@sha256:[0-9a-f]{64}$", var.image))
    error_message = "image must be pinned by digest: <registry>/<repository>@sha256:<64 lowercase hex digits>."
  }
}

variable "peer_ingress" {
  type        = bool
  description = "Let the service's tasks reach each other on `port` (the writer: a write for an event another writer leases is forwarded to that writer's advertised address, docs/operations.md \"Several writers\")."
  default     = false
}

variable "port" {
  type        = number
  description = "Port the tier listens on inside the task (--port)."
  default     = 8000

  validation {
    condition     = var.port >= 1024 && var.port <= 65535 && floor(var.port) == var.port
    error_message = "port must be an unprivileged port, 1024-65535."
  }
}

variable "cpu" {
  type        = number
  description = "Fargate task CPU units (1024 = 1 vCPU). BENCHMARKS.md: a read node serves ~20-24k seat-map req/s per 2 cores; the writer ~650-700 holds/s per process."
  default     = 1024

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.cpu)
    error_message = "cpu must be a Fargate size: 256, 512, 1024, 2048, 4096, 8192 or 16384."
  }
}

variable "memory" {
  type        = number
  description = "Fargate task memory (MiB), one of the sizes Fargate pairs with `cpu` (e.g. 2048 CPU: 4096-16384)."
  default     = 2048

  validation {
    # Fargate's CPU/memory pairs (MiB), as AWS lists them.
    condition = (
      (var.cpu == 256 && contains([512, 1024, 2048], var.memory)) ||
      (var.cpu == 512 && var.memory >= 1024 && var.memory <= 4096 && var.memory % 1024 == 0) ||
      (var.cpu == 1024 && var.memory >= 2048 && var.memory <= 8192 && var.memory % 1024 == 0) ||
      (var.cpu == 2048 && var.memory >= 4096 && var.memory <= 16384 && var.memory % 1024 == 0) ||
      (var.cpu == 4096 && var.memory >= 8192 && var.memory <= 30720 && var.memory % 1024 == 0) ||
      (var.cpu == 8192 && var.memory >= 16384 && var.memory <= 61440 && var.memory % 4096 == 0) ||
      (var.cpu == 16384 && var.memory >= 32768 && var.memory <= 122880 && var.memory % 8192 == 0)
    )
    error_message = "memory does not fit cpu: see Fargate's task sizes (e.g. 2048 CPU: 4096-16384 MiB in 1024 steps)."
  }
}

variable "cpu_architecture" {
  type        = string
  description = "X86_64 or ARM64: must match the image."
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "scaling" {
  type = object({
    min                  = number
    max                  = number
    cpu_target_percent   = number
    requests_per_target  = optional(number)
    scale_in_cooldown_s  = optional(number, 300)
    scale_out_cooldown_s = optional(number, 30)
  })
  description = "Task count bounds and autoscaling targets: average CPU, and (services with a load balancer) requests per task per minute (ALBRequestCountPerTarget). Raise min before an onsale (`scheduled_minimums`, docs/operations.md): scaling out takes minutes, an onsale peaks in seconds."

  validation {
    condition     = var.scaling.min >= 1 && var.scaling.max >= var.scaling.min && var.scaling.max <= 1000 && var.scaling.cpu_target_percent > 0 && var.scaling.cpu_target_percent <= 90
    error_message = "scaling: 1 <= min <= max <= 1000, 0 < cpu_target_percent <= 90."
  }
}

variable "scheduled_minimums" {
  type = list(object({
    name  = string
    from  = string
    until = string
    min   = number
  }))
  description = "Raised task floors for announced onsales: from `from` until `until` (RFC 3339, UTC, e.g. 2027-01-10T09:30:00Z) the service keeps at least `min` tasks (its max is raised to match when below), then returns to scaling.min. Each window is two scheduled actions of Application Auto Scaling, so the floor rises on time even if nobody applies."
  default     = []

  validation {
    condition = alltrue([
      for w in var.scheduled_minimums :
      can(regex("^[a-z0-9][a-z0-9-]{0,39}$", w.name)) &&
      can(regex("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$", w.from)) &&
      can(regex("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$", w.until)) &&
      w.min >= 1 && w.min <= 1000
    ])
    error_message = "scheduled_minimums: name of 1-40 lowercase letters, digits or '-'; from and until in UTC as YYYY-MM-DDThh:mm:ssZ; 1 <= min <= 1000."
  }

  validation {
    condition = alltrue([
      for w in var.scheduled_minimums : try(timecmp(w.from, w.until) < 0, false)
    ])
    error_message = "scheduled_minimums: each window must end after it starts."
  }

  validation {
    # A window's restore action would otherwise drop the floor in the middle of another window.
    condition = length(distinct([for w in var.scheduled_minimums : w.name])) == length(var.scheduled_minimums) && alltrue(flatten([
      for i, a in var.scheduled_minimums : [
        for j, b in var.scheduled_minimums :
        i == j || try(timecmp(a.until, b.from) <= 0 || timecmp(b.until, a.from) <= 0, true)
      ]
    ]))
    error_message = "scheduled_minimums: names must be unique and windows must not overlap."
  }
}

variable "environment" {
  type        = map(string)
  description = "Plain environment variables of the tier (TESSERA_REGION is added). Never secrets: those go in `secret_arns` or `secret_names`."
  default     = {}

  validation {
    condition     = alltrue([for name in keys(var.environment) : !can(regex("(SECRET|PASSWORD|TOKEN|CREDENTIAL|_KEY$)", name))])
    error_message = "environment: a variable named like a secret (…SECRET…, …PASSWORD…, …TOKEN…, …CREDENTIAL…, …_KEY) must come from Secrets Manager (secret_arns / secret_names)."
  }
}

variable "secret_arns" {
  type        = map(string)
  description = "Environment variables read from Secrets Manager at task start: name -> secret ARN (in this region), e.g. TESSERA_DATABASE_URL. ECS resolves them; the value never appears in the task definition."
  default     = {}
}

variable "secret_names" {
  type        = map(string)
  description = "Like `secret_arns`, by secret name in this region (the application secrets created once per environment and replicated to every region: docs/operations.md), e.g. TESSERA_ADMIN_KEY = \"tessera/prod/admin-key\"."
  default     = {}
}

variable "init_command" {
  type        = list(string)
  description = "A command run to completion from the same image before the tier starts (e.g. the regional tier's `python -m tessera_ops.cli jetstream apply --regional ...`); empty: none."
  default     = []
}

variable "init_secret_arns" {
  type        = map(string)
  description = "Secrets of the init container (name -> secret ARN), e.g. TESSERA_NATS_URL with the NATS admin's credentials."
  default     = {}
}

variable "vpc_id" {
  type        = string
  description = "VPC of the tasks and the load balancer."

  validation {
    condition     = can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123456789abcdef0."
  }
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets of the tasks (no public IP)."

  validation {
    condition     = length(var.subnet_ids) > 0 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "subnet_ids: at least one, each like subnet-0123456789abcdef0."
  }
}

variable "load_balancer" {
  type = object({
    internal                = bool
    subnet_ids              = list(string)
    ingress_cidrs           = optional(list(string), [])
    ingress_prefix_list_ids = optional(list(string), [])
    hostname                = string
    extra_certificate_names = optional(list(string), [])
    zone_id                 = string
    origin_header_name      = optional(string)
    blocked_paths           = optional(list(string), [])
  })
  description = "HTTPS load balancer in front of the tasks (null: none, e.g. the notifier): internal or internet-facing, who may reach it (CIDRs and/or managed prefix lists such as CloudFront's origin-facing one), its DNS name in zone_id and any other names its certificate must carry (e.g. the CDN's latency-routed origin name). `origin_header_name`: forward only requests whose header of that name carries one of `origin_secret_values` and answer 403 to the rest (the edge: only our CloudFront distribution knows the value). `blocked_paths`: path patterns answered 404 by the load balancer itself, never forwarded (the edge: /metrics and /v1/admin/*, served on the internal listener only)."
  default     = null

  validation {
    condition = var.load_balancer == null || (
      alltrue([for c in try(var.load_balancer.ingress_cidrs, []) : can(cidrhost(c, 0))]) &&
      length(try(var.load_balancer.blocked_paths, [])) <= 5 &&
      can(regex("^[a-z0-9.-]+$", var.load_balancer.hostname))
    )
    error_message = "load_balancer: ingress_cidrs must be CIDRs, at most 5 blocked_paths (one listener-rule condition), hostname a lowercase DNS name."
  }
}

variable "origin_secret_values" {
  type        = list(string)
  description = "The values of load_balancer.origin_header_name the load balancer accepts (the origin secret's previous, current and next values: edge_cdn's origin_secret_values). Rotation rewrites the listener rule in place; Terraform reads the same secret, so both agree."
  default     = []
  sensitive   = true

  validation {
    # ALB header conditions allow 5 values of up to 128 characters; * and ? would be wildcards.
    condition     = length(var.origin_secret_values) <= 5 && alltrue([for v in var.origin_secret_values : can(regex("^[A-Za-z0-9]{32,128}$", v))])
    error_message = "origin_secret_values: at most 5 values of 32-128 letters or digits."
  }
}

variable "internal_listener" {
  type = object({
    port              = number
    subnet_ids        = list(string)
    ingress_cidrs     = list(string)
    hostname          = string
    zone_id           = string
    health_check_path = optional(string, "/metrics")
  })
  description = "A second, internal HTTPS load balancer in front of the tier's internal port (the edge: /metrics and the waiting room's admin API, TESSERA_EDGE_INTERNAL_PORT), reachable only from ingress_cidrs (the VPC, the operators' networks routed into it). The tasks also accept the Prometheus scraper on that port from the same CIDRs, and the metrics sidecar scrapes it. null: none, metrics on `port`."
  default     = null

  validation {
    condition = var.internal_listener == null || (
      try(var.internal_listener.port, 0) >= 1024 && try(var.internal_listener.port, 0) <= 65535 &&
      length(try(var.internal_listener.ingress_cidrs, [])) > 0 &&
      alltrue([for c in try(var.internal_listener.ingress_cidrs, []) : can(cidrhost(c, 0))])
    )
    error_message = "internal_listener: port 1024-65535 and at least one ingress CIDR, each a valid CIDR."
  }
}

variable "health_check_path" {
  type        = string
  description = "Readiness endpoint for the load balancer and the container health check."
  default     = "/readyz"
}

variable "adot_image" {
  type        = string
  description = "AWS Distro for OpenTelemetry collector image of the metrics sidecar: it scrapes the tier's /metrics (Prometheus text) and ships them to CloudWatch (namespace `metrics_namespace`) for the alarms and the dashboard."
  default     = "public.ecr.aws/aws-observability/aws-otel-collector:v0.43.3"
}

variable "metrics_namespace" {
  type        = string
  description = "CloudWatch namespace of the tier's metrics (the observability module's alarms read it)."
  default     = "Tessera"
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the service's log group."
  default     = 365

  validation {
    condition     = contains([365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days: a CloudWatch Logs retention of at least one year (365, 400, 545, 731, ...)."
  }
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the load balancer from deletion."
  default     = true
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
