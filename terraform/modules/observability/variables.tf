variable "name_prefix" {
  type        = string
  description = "Prefix of alarm and topic names, e.g. \"tessera-prod\"."
}

variable "hub_region" {
  type        = string
  description = "The writer's home region (hold latency is measured there; it has no mirrors)."
}

variable "regions" {
  type        = list(string)
  description = "Every region of the environment, hub included."
}

variable "metrics_namespace" {
  type        = string
  description = "CloudWatch namespace the services' metrics sidecars write (the service module's metrics_namespace)."
  default     = "Tessera"
}

variable "load_balancers" {
  type = map(object({
    region     = string
    tier       = string
    arn_suffix = string
  }))
  description = "Every service load balancer, keyed \"<tier>/<region>\": each gets a 5xx-ratio alarm from its own metrics (HTTPCode_Target_5XX_Count + HTTPCode_ELB_5XX_Count over RequestCount)."
}

variable "cloudfront_distribution_id" {
  type        = string
  description = "The CDN distribution (its 5xxErrorRate alarm); null: none."
  default     = null
}

variable "notification_emails" {
  type        = list(string)
  description = "Addresses subscribed to every region's alarm topic (each confirms by mail). Page through a PagerDuty/Opsgenie subscription on the alarm_topic_arns output as well."
  default     = []
}

variable "thresholds" {
  type = object({
    feed_lag_p99_s      = optional(number, 0.5)
    five_xx_percent     = optional(number, 1)
    hold_latency_p99_s  = optional(number, 0.5)
    mirror_lag_messages = optional(number, 1000)
    mirror_idle_s       = optional(number, 60)
  })
  description = "Alarm thresholds. Defaults from BENCHMARKS.md: feed lag p99 measured 11 ms in-region and cross-region (target 50/100 ms), alarm at 0.5 s; hold p99 measured 195-287 ms at half the writer's peak on shared hardware (target 50 ms), alarm at 0.5 s; a mirror resumes 10-40 s after a hub restart, alarm when idle 60 s."
  default     = {}
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
