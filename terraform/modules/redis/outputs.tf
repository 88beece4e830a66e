output "url_secret_arns" {
  description = "Per region, the ARN of the secret holding TESSERA_REDIS_URL for that region's services (the configuration endpoint of a cluster-mode group: connect with a cluster client): the global datastore's primary in the primary region, the region's writable group elsewhere."
  value       = { for region, secret in aws_secretsmanager_secret.url : region => secret.arn }
}

output "global_replication_group_id" {
  description = "The global datastore (aws elasticache failover-global-replication-group --global-replication-group-id)."
  value       = aws_elasticache_global_replication_group.writer.global_replication_group_id
}

output "replication_group_ids" {
  description = "Per region, the replication groups: primary or secondary of the global datastore, and the local writable group outside the primary region."
  value = {
    for region in keys(var.regions) : region => {
      global = region == var.primary_region ? aws_elasticache_replication_group.primary.id : aws_elasticache_replication_group.secondary[region].id
      local  = region == var.primary_region ? aws_elasticache_replication_group.primary.id : aws_elasticache_replication_group.local[region].id
    }
  }
}

output "writable_nodes" {
  description = "Per region, the writable group (the one the region's services use) and its nodes' cache cluster ids (CloudWatch's CacheClusterId): the observability module's memory and eviction alarms."
  value = {
    for region in keys(var.regions) : region => {
      replication_group_id = local.group_ids[region]
      node_ids             = local.writable_node_ids[region]
    }
  }
}

output "security_group_ids" {
  description = "Per region, the Valkey security group."
  value       = { for region, sg in aws_security_group.redis : region => sg.id }
}
