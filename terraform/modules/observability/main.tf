# CloudWatch alarms for an onsale, one SNS topic per region, and the onsale dashboard
# (dashboard.tf; the same view for Grafana in grafana/onsale.json). Every alarm's description
# names its section of docs/operations.md ("Alarms"), where what to do is written down.
#
# Metrics: the services' ADOT sidecars (service module) scrape each tier's /metrics and write
# them to the `metrics_namespace` namespace with dimensions tier and region (and operation="hold"
# for POST .../holds, and the closed-set labels reason, outcome, result, channel); histograms
# arrive as distributions, so p99 is available; counters keep Prometheus's `_total` suffix and
# arrive as per-scrape deltas (Sum over a period is the count in it). The 5xx ratios, task
# counts, NATS node health and Valkey memory use AWS's own metrics (load balancers, CloudFront,
# Container Insights, ElastiCache). Why CloudWatch rather than Amazon Managed Prometheus: README.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  t        = var.thresholds
  mirrored = [for region in var.regions : region if region != var.hub_region]
  runbook  = "docs/operations.md"
  global   = "us-east-1" # CloudFront's metrics live there
  tags     = merge(var.tags, { "tessera:component" = "observability" })
  # The rotation Lambda's region (us-east-1 in practice) needs a topic too.
  topic_regions = distinct(concat(
    var.regions,
    var.cloudfront_distribution_id == null ? [] : [local.global],
    var.rotation_function == null ? [] : [var.rotation_function.region],
  ))
  subscriptions = {
    for pair in setproduct(local.topic_regions, var.notification_emails) : "${pair[0]}/${pair[1]}" => { region = pair[0], email = pair[1] }
  }
  redis_nodes = {
    for pair in flatten([
      for region, group in var.redis_nodes : [for id in group.node_ids : { region = region, id = id }]
    ]) : pair.id => pair
  }
}

resource "aws_kms_key" "alarms" {
  for_each = toset(local.topic_regions)

  region                  = each.key
  description             = "${var.name_prefix}: alarm topic ${each.key}"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministers"
        Effect    = "Allow"
        Principal = { AWS = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchAlarmsPublish"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.amazonaws.com" }
        Action    = ["kms:Decrypt", "kms:GenerateDataKey*"]
        Resource  = "*"
      },
    ]
  })
  tags = local.tags
}

resource "aws_sns_topic" "alarms" {
  for_each = toset(local.topic_regions)

  region            = each.key
  name              = "${var.name_prefix}-alarms"
  kms_master_key_id = aws_kms_key.alarms[each.key].arn
  tags              = local.tags
}

resource "aws_sns_topic_subscription" "email" {
  for_each = local.subscriptions

  region    = each.value.region
  topic_arn = aws_sns_topic.alarms[each.value.region].arn
  protocol  = "email"
  endpoint  = each.value.email
}

# --- change feed: commit on the writer to applied on a read node ---

resource "aws_cloudwatch_metric_alarm" "feed_lag" {
  for_each = toset(var.regions)

  region              = each.key
  alarm_name          = "${var.name_prefix}-feed-lag-${each.key}"
  alarm_description   = "Change feed p99 (writer commit -> applied on ${each.key}'s read nodes) above ${local.t.feed_lag_p99_s} s for 3 minutes: fans there see stale seat maps. ${local.runbook}#alarm-feed-lag"
  namespace           = var.metrics_namespace
  metric_name         = "tessera_feed_apply_lag_seconds"
  dimensions          = { tier = "regional", region = each.key }
  extended_statistic  = "p99"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  threshold           = local.t.feed_lag_p99_s
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms[each.key].arn]
  ok_actions          = [aws_sns_topic.alarms[each.key].arn]
  tags                = local.tags
}

# --- JetStream: each region's mirror of the hub's feed (the mirror's consumer on the hub) ---

resource "aws_cloudwatch_metric_alarm" "mirror_lag" {
  for_each = toset(local.mirrored)

  region              = each.key
  alarm_name          = "${var.name_prefix}-jetstream-mirror-lag-${each.key}"
  alarm_description   = "${each.key}'s SEATS mirror is more than ${local.t.mirror_lag_messages} messages behind the hub for 3 minutes (JetStream consumer lag). ${local.runbook}#alarm-jetstream-mirror-lag"
  namespace           = var.metrics_namespace
  metric_name         = "tessera_mirror_lag_messages"
  dimensions          = { tier = "regional", region = each.key }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  threshold           = local.t.mirror_lag_messages
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms[each.key].arn]
  ok_actions          = [aws_sns_topic.alarms[each.key].arn]
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "mirror_idle" {
  for_each = toset(local.mirrored)

  region              = each.key
  alarm_name          = "${var.name_prefix}-jetstream-mirror-idle-${each.key}"
  alarm_description   = "${each.key}'s SEATS mirror has not heard from the hub for ${local.t.mirror_idle_s} s (leaf link down, hub down, or the mirror stalled): the region serves its last state. Missing data counts: read nodes that stopped reporting are as bad. ${local.runbook}#alarm-jetstream-mirror-idle"
  namespace           = var.metrics_namespace
  metric_name         = "tessera_mirror_idle_seconds"
  dimensions          = { tier = "regional", region = each.key }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  threshold           = local.t.mirror_idle_s
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alarms[each.key].arn]
  ok_actions          = [aws_sns_topic.alarms[each.key].arn]
  tags                = local.tags
}

# --- the write path: holds ---

resource "aws_cloudwatch_metric_alarm" "hold_latency" {
  region              = var.hub_region
  alarm_name          = "${var.name_prefix}-hold-latency"
  alarm_description   = "p99 of POST .../holds on the writer above ${local.t.hold_latency_p99_s} s for 3 minutes. ${local.runbook}#alarm-hold-latency"
  namespace           = var.metrics_namespace
  metric_name         = "tessera_http_request_duration_seconds"
  dimensions          = { tier = "writer", region = var.hub_region, operation = "hold" }
  extended_statistic  = "p99"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  threshold           = local.t.hold_latency_p99_s
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms[var.hub_region].arn]
  ok_actions          = [aws_sns_topic.alarms[var.hub_region].arn]
  tags                = local.tags
}

# --- 5xx ratio per load balancer, and at the CDN ---

resource "aws_cloudwatch_metric_alarm" "five_xx" {
  for_each = var.load_balancers

  region              = each.value.region
  alarm_name          = "${var.name_prefix}-5xx-${each.value.tier}-${each.value.region}"
  alarm_description   = "More than ${local.t.five_xx_percent}% of requests to the ${each.value.tier} tier in ${each.value.region} answered 5xx for 3 minutes. ${local.runbook}#alarm-5xx-ratio"
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  threshold           = local.t.five_xx_percent
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms[each.value.region].arn]
  ok_actions          = [aws_sns_topic.alarms[each.value.region].arn]
  tags                = local.tags

  metric_query {
    id          = "ratio"
    expression  = "100 * (FILL(target, 0) + FILL(lb, 0)) / IF(requests > 0, requests, 1)"
    label       = "5xx percent"
    return_data = true
  }

  metric_query {
    id = "target"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_Target_5XX_Count"
      dimensions  = { LoadBalancer = each.value.arn_suffix }
      stat        = "Sum"
      period      = 60
    }
  }

  metric_query {
    id = "lb"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_ELB_5XX_Count"
      dimensions  = { LoadBalancer = each.value.arn_suffix }
      stat        = "Sum"
      period      = 60
    }
  }

  metric_query {
    id = "requests"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "RequestCount"
      dimensions  = { LoadBalancer = each.value.arn_suffix }
      stat        = "Sum"
      period      = 60
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "cdn_5xx" {
  count = var.cloudfront_distribution_id == null ? 0 : 1

  region              = local.global
  alarm_name          = "${var.name_prefix}-5xx-cdn"
  alarm_description   = "More than ${local.t.five_xx_percent}% of the CDN's responses to fans were 5xx for 3 minutes. ${local.runbook}#alarm-5xx-ratio"
  namespace           = "AWS/CloudFront"
  metric_name         = "5xxErrorRate"
  dimensions          = { DistributionId = var.cloudfront_distribution_id, Region = "Global" }
  statistic           = "Average"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  threshold           = local.t.five_xx_percent
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms[local.global].arn]
  ok_actions          = [aws_sns_topic.alarms[local.global].arn]
  tags                = local.tags
}

# --- what loses money: the outbox, payments, confirmations ---

# Committed changes not yet on the change feed: fans everywhere see stale seat maps, and the
# ORDERS messages behind them (confirmation e-mails) wait too.
resource "aws_cloudwatch_metric_alarm" "outbox_backlog" {
  region              = var.hub_region
  alarm_name          = "${var.name_prefix}-outbox-backlog"
  alarm_description   = "More than ${local.t.outbox_unpublished} outbox rows committed but unpublished (tessera_outbox_unpublished) for 5 minutes: the writer's relay is not reaching NATS. ${local.runbook}#alarm-outbox-backlog"
  namespace           = var.metrics_namespace
  metric_name         = "tessera_outbox_unpublished"
  dimensions          = { tier = "writer", region = var.hub_region }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  threshold           = local.t.outbox_unpublished
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms[var.hub_region].arn]
  ok_actions          = [aws_sns_topic.alarms[var.hub_region].arn]
  tags                = local.tags
}

# Money held on a fan's card and not yet settled: an order committed but not captured, or a
# cancelled one not voided or refunded.
resource "aws_cloudwatch_metric_alarm" "payments_unsettled" {
  region              = var.hub_region
  alarm_name          = "${var.name_prefix}-payments-unsettled"
  alarm_description   = "The oldest payment still to be captured, voided or refunded is older than ${local.t.payments_unsettled_oldest_s} s (tessera_payments_unsettled_oldest_seconds): the writer's settler is failing against the payment provider. ${local.runbook}#alarm-payments-unsettled"
  namespace           = var.metrics_namespace
  metric_name         = "tessera_payments_unsettled_oldest_seconds"
  dimensions          = { tier = "writer", region = var.hub_region }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  threshold           = local.t.payments_unsettled_oldest_s
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms[var.hub_region].arn]
  ok_actions          = [aws_sns_topic.alarms[var.hub_region].arn]
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "notifier_dead_letters" {
  region              = var.hub_region
  alarm_name          = "${var.name_prefix}-notifier-dead-letters"
  alarm_description   = "More than ${local.t.notifier_dead_letters} order confirmations dead-lettered in 5 minutes (tessera_notifications_dead_lettered_total): fans paid and got no e-mail or SMS. ${local.runbook}#alarm-notifier-dead-letters"
  namespace           = var.metrics_namespace
  metric_name         = "tessera_notifications_dead_lettered_total"
  dimensions          = { tier = "notifier", region = var.hub_region }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  datapoints_to_alarm = 1
  threshold           = local.t.notifier_dead_letters
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms[var.hub_region].arn]
  ok_actions          = [aws_sns_topic.alarms[var.hub_region].arn]
  tags                = local.tags
}

# --- what loses fans: NATS nodes, Valkey, tasks that do not start ---

resource "aws_cloudwatch_metric_alarm" "nats_nodes" {
  for_each = var.nats_load_balancers

  region              = each.key
  alarm_name          = "${var.name_prefix}-nats-node-unhealthy-${each.key}"
  alarm_description   = "Fewer than ${each.value.nodes} NATS nodes in ${each.key} pass /healthz?js-enabled-only=true for 3 minutes: the region's JetStream runs without its spare replica (one more loss stops it). Missing data counts: a load balancer with no healthy target reports nothing. ${local.runbook}#alarm-nats-node-unhealthy"
  namespace           = "AWS/NetworkELB"
  metric_name         = "HealthyHostCount"
  dimensions          = { LoadBalancer = each.value.arn_suffix, TargetGroup = each.value.target_group_arn_suffix }
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  threshold           = each.value.nodes
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alarms[each.key].arn]
  ok_actions          = [aws_sns_topic.alarms[each.key].arn]
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "redis_memory" {
  for_each = local.redis_nodes

  region              = each.value.region
  alarm_name          = "${var.name_prefix}-redis-memory-${each.key}"
  alarm_description   = "Valkey node ${each.key} (${each.value.region}) above ${local.t.redis_memory_percent}% of its memory for 5 minutes: evictions (lost waiting-room places, reset rate budgets) come next. ${local.runbook}#alarm-redis-memory"
  namespace           = "AWS/ElastiCache"
  metric_name         = "DatabaseMemoryUsagePercentage"
  dimensions          = { CacheClusterId = each.key }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  threshold           = local.t.redis_memory_percent
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms[each.value.region].arn]
  ok_actions          = [aws_sns_topic.alarms[each.value.region].arn]
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "redis_evictions" {
  for_each = local.redis_nodes

  region              = each.value.region
  alarm_name          = "${var.name_prefix}-redis-evictions-${each.key}"
  alarm_description   = "Valkey node ${each.key} (${each.value.region}) evicted more than ${local.t.redis_evictions} keys in 5 minutes: waiting-room tickets, admissions or rate budgets were dropped. ${local.runbook}#alarm-redis-evictions"
  namespace           = "AWS/ElastiCache"
  metric_name         = "Evictions"
  dimensions          = { CacheClusterId = each.key }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  datapoints_to_alarm = 1
  threshold           = local.t.redis_evictions
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms[each.value.region].arn]
  ok_actions          = [aws_sns_topic.alarms[each.value.region].arn]
  tags                = local.tags
}

# Running below desired for minutes: tasks that cannot start (image pull, a secret they may not
# read, Fargate capacity), or a floor raised for an onsale that is not met.
resource "aws_cloudwatch_metric_alarm" "tasks_below_desired" {
  for_each = var.services

  region              = each.value.region
  alarm_name          = "${var.name_prefix}-tasks-below-desired-${replace(each.key, "/", "-")}"
  alarm_description   = "The ${each.key} ECS service has run fewer tasks than desired for ${local.t.tasks_below_desired_minutes} minutes (Container Insights RunningTaskCount < DesiredTaskCount). ${local.runbook}#alarm-tasks-below-desired"
  evaluation_periods  = local.t.tasks_below_desired_minutes
  datapoints_to_alarm = local.t.tasks_below_desired_minutes
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms[each.value.region].arn]
  ok_actions          = [aws_sns_topic.alarms[each.value.region].arn]
  tags                = local.tags

  metric_query {
    id          = "missing"
    expression  = "desired - running"
    label       = "tasks missing"
    return_data = true
  }

  metric_query {
    id = "desired"
    metric {
      namespace   = "ECS/ContainerInsights"
      metric_name = "DesiredTaskCount"
      dimensions  = { ClusterName = each.value.cluster_name, ServiceName = each.value.service_name }
      stat        = "Minimum"
      period      = 60
    }
  }

  metric_query {
    id = "running"
    metric {
      namespace   = "ECS/ContainerInsights"
      metric_name = "RunningTaskCount"
      dimensions  = { ClusterName = each.value.cluster_name, ServiceName = each.value.service_name }
      stat        = "Minimum"
      period      = 60
    }
  }
}

# --- the CDN's origin secret ---

resource "aws_cloudwatch_metric_alarm" "origin_secret_rotation" {
  count = var.rotation_function == null ? 0 : 1

  region              = var.rotation_function.region
  alarm_name          = "${var.name_prefix}-origin-secret-rotation"
  alarm_description   = "The CDN origin secret's rotation (${var.rotation_function.name}) failed: CloudFront, the edge load balancers or the edges may disagree on the accepted values. ${local.runbook}#alarm-origin-secret-rotation"
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = var.rotation_function.name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  datapoints_to_alarm = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms[var.rotation_function.region].arn]
  ok_actions          = [aws_sns_topic.alarms[var.rotation_function.region].arn]
  tags                = local.tags
}
