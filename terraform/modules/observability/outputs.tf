output "alarm_topic_arns" {
  description = "Per region (us-east-1 too when the CDN is watched), the SNS topic every alarm of that region notifies: subscribe the on-call pager here."
  value       = { for region, topic in aws_sns_topic.alarms : region => topic.arn }
}

output "alarm_names" {
  description = "Every alarm, by kind: what docs/operations.md's \"Alarms\" section explains."
  value = {
    feed_lag    = [for a in aws_cloudwatch_metric_alarm.feed_lag : a.alarm_name]
    mirror_lag  = [for a in aws_cloudwatch_metric_alarm.mirror_lag : a.alarm_name]
    mirror_idle = [for a in aws_cloudwatch_metric_alarm.mirror_idle : a.alarm_name]
    hold        = [aws_cloudwatch_metric_alarm.hold_latency.alarm_name]
    five_xx     = concat([for a in aws_cloudwatch_metric_alarm.five_xx : a.alarm_name], [for a in aws_cloudwatch_metric_alarm.cdn_5xx : a.alarm_name])
    outbox      = [aws_cloudwatch_metric_alarm.outbox_backlog.alarm_name]
    payments    = [aws_cloudwatch_metric_alarm.payments_unsettled.alarm_name]
    dead_letter = [aws_cloudwatch_metric_alarm.notifier_dead_letters.alarm_name]
    nats_nodes  = [for a in aws_cloudwatch_metric_alarm.nats_nodes : a.alarm_name]
    redis       = concat([for a in aws_cloudwatch_metric_alarm.redis_memory : a.alarm_name], [for a in aws_cloudwatch_metric_alarm.redis_evictions : a.alarm_name])
    tasks       = [for a in aws_cloudwatch_metric_alarm.tasks_below_desired : a.alarm_name]
    rotation    = [for a in aws_cloudwatch_metric_alarm.origin_secret_rotation : a.alarm_name]
  }
}

output "dashboard" {
  description = "The onsale dashboard in CloudWatch: its name and console URL (the hub region)."
  value = {
    name = aws_cloudwatch_dashboard.onsale.dashboard_name
    url  = "https://${var.hub_region}.console.aws.amazon.com/cloudwatch/home?region=${var.hub_region}#dashboards/dashboard/${aws_cloudwatch_dashboard.onsale.dashboard_name}"
  }
}

output "grafana_dashboard_path" {
  description = "The same onsale view as a Grafana dashboard for a Prometheus data source (import this file)."
  value       = "${path.module}/grafana/onsale.json"
}
