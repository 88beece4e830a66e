variable "name" {
  type        = string
  description = "Name of the distribution's resources, e.g. \"tessera-prod\"."
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
}

variable "origin_hostname" {
  type        = string
  description = "The latency-routed name in front of the regions' edge load balancers, e.g. origin.tickets.example.com: each region's edge certificate must carry it."
}

variable "origins" {
  type = map(object({
    dns_name = string
    zone_id  = string
  }))
  description = "Per region, the edge tier's public load balancer (DNS name and hosted zone id). Each gets a latency record under origin_hostname, so every CloudFront location reaches the nearest healthy region."
}

variable "origin_shield_region" {
  type        = string
  description = "Region of CloudFront's Origin Shield for the cacheable seat maps: every location's misses funnel through it, so the origin sees about one request per seat map per max-age. The shield resolves origin_hostname from its own region, so pick the writer's home region (no mirror hop behind it). null: no shield."
  default     = null
}

variable "price_class" {
  type        = string
  description = "CloudFront price class: PriceClass_All for a worldwide onsale."
  default     = "PriceClass_All"
}

variable "cache_max_ttl_s" {
  type        = number
  description = "Upper bound of what CloudFront caches; within it the origin's Cache-Control decides (seat maps: max-age=1, stale-while-revalidate=5)."
  default     = 60
}

variable "rate_limit_per_ip" {
  type        = number
  description = "WAF: requests per client IP per 5 minutes, all paths, before blocking (fans behind one carrier NAT share an IP: keep it generous; the edges' own per-fan budgets are finer)."
  default     = 6000
}

variable "write_rate_limit_per_ip" {
  type        = number
  description = "WAF: hold and order requests (POST .../holds, /v1/holds/..., /v1/orders) per client IP per 5 minutes."
  default     = 300
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
  description = "Retention of the WAF log group."
  default     = 365
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
