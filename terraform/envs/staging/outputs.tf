output "url" {
  description = "What fans open."
  value       = module.cdn.url
}

output "hub_region" {
  description = "The writer's home region."
  value       = local.hub_region
}

output "writer_url" {
  description = "The writer's internal URL (admin API: POST /v1/admin/events with X-Admin-Key)."
  value       = module.writer.url
}

output "regions" {
  description = "Per region: the read nodes' and edges' URLs (edge_admin_url: the waiting room's admin API and /metrics, from inside the VPC), ECS cluster and service names (for `aws ecs update-service`), the NATS client name and the streams the read nodes consume."
  value = {
    for r in var.regions : r => {
      regional_url     = module.regional[r].url
      edge_url         = module.edge[r].url
      edge_admin_url   = module.edge[r].internal_url
      regional_service = { cluster = module.regional[r].cluster_name, service = module.regional[r].service_name }
      edge_service     = { cluster = module.edge[r].cluster_name, service = module.edge[r].service_name }
      nats             = module.nats.client_hostnames[r]
      streams          = module.nats.streams[r]
      leaf_to_hub      = lookup(module.nats.leaf_connections, r, null)
    }
  }
}

output "writer_service" {
  description = "The writer's ECS cluster and service names."
  value       = { cluster = module.writer.cluster_name, service = module.writer.service_name }
}

output "nats_server_configs" {
  description = "Every NATS node's rendered configuration (no secrets), keyed <region>/<index>."
  value       = module.nats.server_configs
}

output "alarm_topic_arns" {
  description = "Per region, the SNS topic the alarms notify (subscribe the pager)."
  value       = module.observability.alarm_topic_arns
}

output "alarms" {
  description = "Every alarm by kind (docs/operations.md, \"Alarms\")."
  value       = module.observability.alarm_names
}

output "dashboards" {
  description = "The onsale dashboard: CloudWatch (name, console URL) and the Grafana JSON to import into a Grafana with a Prometheus data source."
  value = {
    cloudwatch = module.observability.dashboard
    grafana    = module.observability.grafana_dashboard_path
  }
}

output "scheduled_onsales" {
  description = "The raised task floors scheduled for announced onsales (var.onsales), per tier and region: check them the week before (docs/operations.md, \"Scale for an onsale\")."
  value = {
    for r in var.regions : r => {
      edge     = module.edge[r].scheduled_windows
      regional = module.regional[r].scheduled_windows
    }
  }
}

output "redis_global_datastore" {
  description = "The Redis global datastore id (failover: docs/operations.md, \"Recover a region\")."
  value       = module.redis.global_replication_group_id
}

output "database" {
  description = "CockroachDB cluster id and the database's regions (primary first)."
  value = {
    cluster_id = module.database.cluster_id
    regions    = module.database.database_regions
  }
}
