output "url" {
  description = "What fans open: https://<hostname>."
  value       = "https://${var.hostname}"
}

output "distribution_id" {
  description = "CloudFront distribution id (invalidations, the CloudFront alarms' DistributionId dimension)."
  value       = aws_cloudfront_distribution.edge.id
}

output "distribution_domain_name" {
  description = "CloudFront's own name for the distribution."
  value       = aws_cloudfront_distribution.edge.domain_name
}

output "web_acl_name" {
  description = "The WAF web ACL (its CloudWatch metrics' WebACL dimension)."
  value       = aws_wafv2_web_acl.edge.name
}

output "origin_facing_prefix_list_ids" {
  description = "Per region, CloudFront's origin-facing managed prefix list: the only source the edge load balancers accept."
  value       = { for region, list in data.aws_ec2_managed_prefix_list.origin_facing : region => list.id }
}

output "origin_facing_cidrs" {
  description = "Per region, the CIDRs of CloudFront's origin-facing addresses, for the edges' TESSERA_TRUSTED_PROXIES (their X-Forwarded-For entries are believed)."
  value       = { for region, list in data.aws_ec2_managed_prefix_list.origin_facing : region => sort([for entry in list.entries : entry.cidr]) }

  precondition {
    condition     = alltrue([for list in data.aws_ec2_managed_prefix_list.origin_facing : length(list.entries) <= 60])
    error_message = "CloudFront's origin-facing list grew past 60 entries: the edge accepts at most 64 trusted proxies (tessera.limits.edge_trusted_proxies_max) and the VPC's CIDRs come on top."
  }
}

output "origin_secret_arns" {
  description = "Per region of `origins`, the ARN of that region's copy of the origin secret (JSON previous/current/next): the edges' TESSERA_EDGE_ORIGIN_SECRETS (valueFrom)."
  value = {
    for region in local.origin_regions :
    region => replace(aws_secretsmanager_secret.origin.arn, ":${local.global_region}:", ":${region}:")
  }
  # An edge task started before the secret has a value would fail to start.
  depends_on = [aws_secretsmanager_secret_version.origin_seed]
}

output "origin_secret_values" {
  description = "The origin header values the edge load balancers accept (previous, current, next): the service module's origin_secret_values."
  value       = local.origin_accepted
  sensitive   = true
}

output "origin_header_name" {
  description = "The header CloudFront adds with the origin secret (the edge load balancers' origin_header_name)."
  value       = var.origin_header_name
}

output "origin_secret_rotation_function" {
  description = "The origin secret's rotation Lambda (region, name): the observability module alarms on its errors."
  value       = { region = local.global_region, name = aws_lambda_function.rotation.function_name }
}
