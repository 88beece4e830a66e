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
}

variable "image" {
  type        = string
  description = "Container image of Tessera (the repository built with its nats/ folder at /app/nats), preferably pinned by digest: repo@sha256:..."
}

variable "port" {
  type        = number
  description = "Port the tier listens on inside the task (--port)."
  default     = 8000
}

variable "cpu" {
  type        = number
  description = "Fargate task CPU units (1024 = 1 vCPU). BENCHMARKS.md: a read node serves ~20-24k seat-map req/s per 2 cores; the writer ~650-700 holds/s per process."
  default     = 1024
}

variable "memory" {
  type        = number
  description = "Fargate task memory (MiB)."
  default     = 2048
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
  description = "Task count bounds and autoscaling targets: average CPU, and (services with a load balancer) requests per task per minute (ALBRequestCountPerTarget). Raise min before an onsale (docs/operations.md): scaling out takes minutes, an onsale peaks in seconds."

  validation {
    condition     = var.scaling.min >= 1 && var.scaling.max >= var.scaling.min && var.scaling.cpu_target_percent > 0 && var.scaling.cpu_target_percent <= 90
    error_message = "scaling: 1 <= min <= max, 0 < cpu_target_percent <= 90."
  }
}

variable "environment" {
  type        = map(string)
  description = "Plain environment variables of the tier (TESSERA_REGION is added). Never secrets: those go in `secrets`."
  default     = {}
}

variable "secrets" {
  type        = map(string)
  description = "Environment variables read from Secrets Manager at task start: name -> secret ARN (in this region), e.g. TESSERA_JWT_SECRET."
  default     = {}
}

variable "secret_names" {
  type        = map(string)
  description = "Like `secrets`, by secret name in this region (the application secrets created once per environment and replicated to every region: docs/operations.md), e.g. TESSERA_JWT_SECRET = \"tessera/prod/jwt-secret\"."
  default     = {}
}

variable "init_command" {
  type        = list(string)
  description = "A command run to completion from the same image before the tier starts (e.g. the regional tier's `python -m tessera.tooling.cli jetstream apply --regional ...`); empty: none."
  default     = []
}

variable "init_secrets" {
  type        = map(string)
  description = "Secrets of the init container (name -> secret ARN), e.g. TESSERA_NATS_URL with the NATS admin's credentials."
  default     = {}
}

variable "vpc_id" {
  type        = string
  description = "VPC of the tasks and the load balancer."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets of the tasks (no public IP)."
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
  })
  description = "HTTPS load balancer in front of the tasks (null: none, e.g. the notifier): internal or internet-facing, who may reach it (CIDRs and/or managed prefix lists such as CloudFront's origin-facing one), its DNS name in zone_id and any other names its certificate must carry (e.g. the CDN's latency-routed origin name)."
  default     = null
}

variable "health_check_path" {
  type        = string
  description = "Readiness endpoint for the load balancer and the container health check."
  default     = "/readyz"
}

variable "adot_image" {
  type        = string
  description = "AWS Distro for OpenTelemetry collector image of the metrics sidecar: it scrapes the tier's /metrics (Prometheus text) and ships them to CloudWatch (namespace `metrics_namespace`) for the alarms."
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
