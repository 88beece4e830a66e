output "url" {
  description = "The service's HTTPS URL (its load balancer's name), e.g. TESSERA_WRITER_URL or one of an edge's TESSERA_ORIGIN_URLS; null without a load balancer."
  value       = local.has_lb ? "https://${var.load_balancer.hostname}" : null
}

output "load_balancer" {
  description = "The load balancer's DNS name, Route 53 zone id and CloudWatch dimension (arn_suffix) for alias records and alarms; null without one."
  value = local.has_lb ? {
    dns_name                = aws_lb.service[0].dns_name
    zone_id                 = aws_lb.service[0].zone_id
    arn_suffix              = aws_lb.service[0].arn_suffix
    target_group_arn_suffix = aws_lb_target_group.service[0].arn_suffix
  } : null
}

output "cluster_name" {
  description = "ECS cluster name (aws ecs ... --cluster)."
  value       = aws_ecs_cluster.service.name
}

output "service_name" {
  description = "ECS service name (aws ecs update-service --service)."
  value       = aws_ecs_service.service.name
}

output "tasks_security_group_id" {
  description = "Security group of the tasks, for the rules of what they connect to."
  value       = aws_security_group.tasks.id
}

output "log_group_name" {
  description = "CloudWatch log group of the tier's structured JSON logs."
  value       = aws_cloudwatch_log_group.service.name
}

output "internal_url" {
  description = "The internal listener's HTTPS URL (the edge: the waiting room's admin API and /metrics, reachable from inside the VPC only); null without one."
  value       = local.has_int ? "https://${var.internal_listener.hostname}" : null
}

output "origin_listener_rule_arn" {
  description = "The listener rule that forwards only requests carrying the origin header (the origin secret's rotation rewrites its values); null when the load balancer is not guarded."
  value       = local.guarded ? aws_lb_listener_rule.origin[0].arn : null
}

output "service_arn" {
  description = "ECS service ARN (IAM policies that may redeploy it, e.g. the origin secret's rotation)."
  value       = aws_ecs_service.service.id
}

output "scheduled_windows" {
  description = "The raised floors scheduled for announced onsales: name -> from, until (UTC), min tasks."
  value       = { for name, w in local.windows : name => { from = w.from, until = w.until, min = w.min } }
}
