# CloudWatch alarms for an onsale, one SNS topic per region. Every alarm's description names its
# section of docs/operations.md ("Alarms"), where what to do is written down.
#
# Metrics: the services' ADOT sidecars (service module) scrape each tier's /metrics and write
# them to the `metrics_namespace` namespace with dimensions tier and region (and operation="hold"
# for POST .../holds); histograms arrive as distributions, so p99 is available. The 5xx ratios
# use the load balancers' and CloudFront's own metrics.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  t             = var.thresholds
  mirrored      = [for region in var.regions : region if region != var.hub_region]
  runbook       = "docs/operations.md"
  global        = "us-east-1" # CloudFront's metrics live there
  topic_regions = distinct(concat(var.regions, var.cloudfront_distribution_id == null ? [] : [local.global]))
  tags          = merge(var.tags, { "tessera:component" = "observability" })
  subscriptions = {
    for pair in setproduct(local.topic_regions, var.notification_emails) : "${pair[0]}/${pair[1]}" => { region = pair[0], email = pair[1] }
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
