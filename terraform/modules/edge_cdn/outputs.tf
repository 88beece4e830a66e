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
