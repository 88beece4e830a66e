variable "name" {
  type        = string
  description = "Name of the distribution's resources, e.g. \"tessera-prod\"."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name: 2-31 lowercase letters, digits or '-', starting with a letter."
  }
}

variable "zone" {
  type = object({
    id   = string
    name = string
  })
  description = "Public Route 53 zone of the fans' host name and of the origin name."
}

variable "hostname" {
  type        = string
  description = "The fans' host name, e.g. tickets.example.com (CloudFront alias, certificate)."

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]*[a-z0-9])?\\.)+[a-z]{2,}$", var.hostname))
    error_message = "hostname must be a lowercase DNS name such as tickets.example.com."
  }
}

variable "origin_hostname" {
  type        = string
  description = "The latency-routed name in front of the regions' edge load balancers, e.g. origin.tickets.example.com: each region's edge certificate must carry it."

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]*[a-z0-9])?\\.)+[a-z]{2,}$", var.origin_hostname))
    error_message = "origin_hostname must be a lowercase DNS name."
  }
}

variable "origins" {
  type = map(object({
    dns_name = string
    zone_id  = string
  }))
  description = "Per region, the edge tier's public load balancer (DNS name and hosted zone id). Each gets a latency record under origin_hostname, so every CloudFront location reaches the nearest healthy region."

  validation {
    condition     = length(var.origins) > 0 && alltrue([for r in keys(var.origins) : can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", r))])
    error_message = "origins: at least one, keyed by AWS region name (e.g. eu-west-1)."
  }
}

variable "origin_shield_region" {
  type        = string
  description = "Region of CloudFront's Origin Shield for the cacheable seat maps: every location's misses funnel through it, so the origin sees about one request per seat map per max-age. The shield resolves origin_hostname from its own region, so pick the writer's home region (no mirror hop behind it). null: no shield."
  default     = null
  validation {
    condition     = var.origin_shield_region == null || can(regex("^[a-z]{2}-[a-z]+-[0-9]$", var.origin_shield_region))
    error_message = "origin_shield_region must be null or an AWS region name such as us-east-1."
  }
}

variable "price_class" {
  type        = string
  description = "CloudFront price class: PriceClass_All for a worldwide onsale."
  default     = "PriceClass_All"

  validation {
    condition     = contains(["PriceClass_All", "PriceClass_200", "PriceClass_100"], var.price_class)
    error_message = "price_class must be PriceClass_All, PriceClass_200 or PriceClass_100."
  }
}

variable "cache_max_ttl_s" {
  type        = number
  description = "Upper bound of what CloudFront caches; within it the origin's Cache-Control decides (seat maps: max-age=1, stale-while-revalidate=5)."
  default     = 60
  validation {
    condition     = var.cache_max_ttl_s >= 1 && var.cache_max_ttl_s <= 3600
    error_message = "cache_max_ttl_s: 1 to 3600 seconds (the seat maps change every second during an onsale)."
  }
}

variable "rate_limit_per_ip" {
  type        = number
  description = "WAF: requests per client IP per 5 minutes, all paths, before blocking (fans behind one carrier NAT share an IP: keep it generous; the edges' own per-fan budgets are finer)."
  default     = 6000

  validation {
    condition     = var.rate_limit_per_ip >= 100 && var.rate_limit_per_ip <= 2000000000
    error_message = "rate_limit_per_ip: WAF takes 100 to 2,000,000,000 requests per 5 minutes."
  }
}

variable "write_rate_limit_per_ip" {
  type        = number
  description = "WAF: hold and order requests (POST .../holds, /v1/holds/..., /v1/orders) per client IP per 5 minutes."
  default     = 300

  validation {
    condition     = var.write_rate_limit_per_ip >= 100 && var.write_rate_limit_per_ip <= var.rate_limit_per_ip
    error_message = "write_rate_limit_per_ip: at least 100 (WAF's minimum) and at most rate_limit_per_ip."
  }
}

variable "bot_control_inspection_level" {
  type        = string
  description = "AWS WAF Bot Control: COMMON (self-identifying bots) or TARGETED (adds browser interrogation and ML against sophisticated bots; priced per request)."
  default     = "COMMON"

  validation {
    condition     = contains(["COMMON", "TARGETED"], var.bot_control_inspection_level)
    error_message = "bot_control_inspection_level must be COMMON or TARGETED."
  }
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the WAF log group and the origin-secret rotation's logs."
  default     = 365

  validation {
    condition     = contains([365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days: a CloudWatch Logs retention of at least one year (365, 400, 545, 731, ...)."
  }
}

variable "origin_header_name" {
  type        = string
  description = "The header CloudFront adds to every origin request with the origin secret's current value; the edge load balancers forward only requests carrying one of its accepted values (TESSERA_EDGE_ORIGIN_SECRETS on the edges)."
  default     = "X-Origin-Secret"

  validation {
    condition     = can(regex("^X-[A-Za-z0-9-]{1,40}$", var.origin_header_name))
    error_message = "origin_header_name: a custom header name, X- followed by up to 40 letters, digits or '-'."
  }
}

variable "origin_guards" {
  type = map(object({
    listener_rule_arn = string
    cluster_name      = string
    service_name      = string
  }))
  description = "Per region, what the origin secret's rotation updates there: the edge load balancer's origin listener rule (its accepted values) and the edge ECS service (redeployed so its tasks read the new values). Keys are the regions of `origins`."
  default     = {}
}

variable "origin_secret_rotation_schedule" {
  type        = string
  description = "When the origin secret rotates: a Secrets Manager schedule expression in UTC, by default the first Tuesday of each month from 04:00. A rotation redeploys every edge: never schedule it into an onsale (docs/operations.md)."
  default     = "cron(0 4 ? * 3#1 *)"

  validation {
    condition     = can(regex("^(cron|rate)\\(.+\\)$", var.origin_secret_rotation_schedule))
    error_message = "origin_secret_rotation_schedule must be a cron(...) or rate(...) expression."
  }
}

variable "origin_secret_rotation_window" {
  type        = string
  description = "How long after the schedule's start the rotation may run (Secrets Manager's rotation window), e.g. 2h."
  default     = "2h"

  validation {
    condition     = can(regex("^[0-9]{1,2}h$", var.origin_secret_rotation_window))
    error_message = "origin_secret_rotation_window must be a duration in hours such as 2h."
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
