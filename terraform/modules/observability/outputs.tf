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
  }
}
