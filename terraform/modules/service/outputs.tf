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
