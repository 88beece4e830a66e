variable "name_prefix" {
  type        = string
  description = "Prefix of alarm, topic and dashboard names, e.g. \"tessera-prod\"."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name_prefix))
    error_message = "name_prefix: 2-31 lowercase letters, digits or '-', starting with a letter."
  }
}

variable "hub_region" {
  type        = string
  description = "The writer's home region (hold latency, the outbox, payments and the notifier are measured there; it has no mirrors; the dashboard lives there)."

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.hub_region)) && contains(var.regions, var.hub_region)
    error_message = "hub_region must be an AWS region name and one of regions."
  }
}

variable "regions" {
  type        = list(string)
  description = "Every region of the environment, hub included."

  validation {
    condition     = length(var.regions) > 0 && alltrue([for r in var.regions : can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", r))])
    error_message = "regions: at least one AWS region name such as eu-west-1."
  }
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

variable "services" {
  type = map(object({
    region       = string
    cluster_name = string
    service_name = string
  }))
  description = "Every ECS service, keyed \"<tier>/<region>\": each gets an alarm when Container Insights' RunningTaskCount stays below DesiredTaskCount (tasks that cannot start: image, secrets, capacity), and a line on the dashboard."
  default     = {}
}

variable "nats_load_balancers" {
  type = map(object({
    arn_suffix              = string
    target_group_arn_suffix = string
    nodes                   = number
  }))
  description = "Per region, the NATS client network load balancer and target group (nats_regions' load_balancers output) and its node count: an alarm when fewer nodes than that pass the JetStream health check."
  default     = {}
}

variable "redis_nodes" {
  type = map(object({
    replication_group_id = string
    node_ids             = list(string)
  }))
  description = "Per region, the writable Valkey group and its nodes (redis' writable_nodes output): memory and eviction alarms per node, and the dashboard's memory widget."
  default     = {}
}

variable "rotation_function" {
  type = object({
    region = string
    name   = string
  })
  description = "The CDN origin secret's rotation Lambda (edge_cdn's origin_secret_rotation_function): an alarm on its errors (a failed rotation leaves the edges without the new values). null: none."
  default     = null
}

variable "cloudfront_distribution_id" {
  type        = string
  description = "The CDN distribution (its 5xxErrorRate alarm and dashboard widget); null: none."
  default     = null
}

variable "notification_emails" {
  type        = list(string)
  description = "Addresses subscribed to every region's alarm topic (each confirms by mail). Page through a PagerDuty/Opsgenie subscription on the alarm_topic_arns output as well."
  default     = []

  validation {
    condition     = alltrue([for e in var.notification_emails : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", e))])
    error_message = "notification_emails: e-mail addresses."
  }
}

variable "thresholds" {
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
  description = "Alarm thresholds. Defaults from BENCHMARKS.md and docs/capacity.md: feed lag p99 measured 11 ms in-region and cross-region (target 50/100 ms), alarm at 0.5 s; hold p99 measured 195-287 ms at half the writer's peak on shared hardware (target 50 ms), alarm at 0.5 s; a mirror resumes 10-40 s after a hub restart, alarm when idle 60 s; the relay publishes an outbox row within milliseconds and ~35 batches/s commit at the planned onsale, so 1000 unpublished rows for 5 minutes is a stalled relay; any dead-lettered confirmation or Valkey eviction is a fan without an e-mail or a lost waiting-room place; a payment left unsettled (not captured, voided or refunded) for 15 minutes is money held on a fan's card."
  default     = {}

  validation {
    condition = (
      var.thresholds.five_xx_percent > 0 && var.thresholds.five_xx_percent < 100 &&
      var.thresholds.redis_memory_percent > 0 && var.thresholds.redis_memory_percent < 100 &&
      var.thresholds.tasks_below_desired_minutes >= 1 && var.thresholds.tasks_below_desired_minutes <= 60 &&
      var.thresholds.payments_unsettled_oldest_s >= 60
    )
    error_message = "thresholds: percentages between 0 and 100, tasks_below_desired_minutes 1-60, payments_unsettled_oldest_s at least 60."
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
