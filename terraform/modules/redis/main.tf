# Valkey (Redis-compatible) per region, in cluster mode, with a global datastore replicating the
# writer's to every region. Cluster mode with several shards because docs/capacity.md puts the
# first limit of a 14-million-fan onsale at the waiting room's ticket polls: ~470,000 Lua
# scripts/s in the writer's region, about 5 Valkey primaries at ~100,000 simple scripts/s each.
# The room's keys carry the {event_id} hash tag, so one event's room stays on one shard.
#
# - primary region: one replication group, the global datastore's primary. The writer keeps its
#   hold mirror (TTL'd), per-fan counts and rate-limit state here; the region's edges share it.
# - every other region:
#   * a secondary of the global datastore (read-only, replicated in about a second): a warm copy
#     of the writer's Redis, promoted if the writer's home region moves (docs/operations.md);
#   * a writable "local" group for that region's edges (rate budgets, waiting rooms: edges write
#     on every admitted request, and a global datastore secondary refuses writes).
# Nothing that decides a sale lives only in Redis (docs/architecture.md §7.3): losing it never oversells.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  secondaries = { for region, cfg in var.regions : region => cfg if region != var.primary_region }
  port        = 6379
  # Cluster mode needs a cluster-enabled parameter group of the engine's major version.
  parameter_group = "default.valkey${split(".", var.engine_version)[0]}.cluster.on"
  # The writable group of each region: the global datastore's primary in the primary region.
  group_ids = { for region in keys(var.regions) : region => "${var.name_prefix}-${region}" }
  # The writable groups' nodes, named as ElastiCache names cluster-mode members
  # (<group>-<shard:4>-<node:3>), known at plan time for the per-node alarms.
  writable_node_ids = {
    for region, cfg in var.regions : region => flatten([
      for shard in range(1, cfg.shards + 1) : [
        for node in range(1, var.replicas_per_shard + 2) : format("%s-%04d-%03d", local.group_ids[region], shard, node)
      ]
    ])
  }
  common_tags = merge(var.tags, { "tessera:component" = "redis" })
  allowed = {
    for pair in flatten([for region, cfg in var.regions : [for cidr in cfg.allowed_cidrs : { region = region, cidr = cidr }]]) :
    "${pair.region}/${pair.cidr}" => pair
  }
}

resource "aws_kms_key" "redis" {
  for_each = var.regions

  region                  = each.key
  description             = "${var.name_prefix} Redis ${each.key}: data at rest and URL secrets"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AccountAdministers"
      Effect    = "Allow"
      Principal = { AWS = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root" }
      Action    = "kms:*"
      Resource  = "*"
    }]
  })
  tags = local.common_tags
}

resource "aws_elasticache_subnet_group" "redis" {
  for_each = var.regions

  region      = each.key
  name        = "${var.name_prefix}-redis-${each.key}"
  description = "Tessera Redis in ${each.key}"
  subnet_ids  = each.value.subnet_ids
  tags        = local.common_tags
}

resource "aws_security_group" "redis" {
  for_each = var.regions

  region      = each.key
  name        = "${var.name_prefix}-redis-${each.key}"
  description = "Tessera Valkey in ${each.key}: the region's services"
  vpc_id      = each.value.vpc_id
  tags        = local.common_tags
}

resource "aws_vpc_security_group_ingress_rule" "redis" {
  for_each = local.allowed

  region            = each.value.region
  security_group_id = aws_security_group.redis[each.value.region].id
  description       = "Valkey (TLS) from the region's services"
  ip_protocol       = "tcp"
  from_port         = local.port
  to_port           = local.port
  cidr_ipv4         = each.value.cidr
}

resource "random_password" "auth" {
  for_each = var.regions

  length  = 64
  special = false # also the password part of a rediss:// URL
}

# --- the global datastore: primary, and one secondary per other region ---

resource "aws_elasticache_replication_group" "primary" {
  region                     = var.primary_region
  replication_group_id       = local.group_ids[var.primary_region]
  description                = "Tessera Valkey, global datastore primary (writer's home region)"
  engine                     = "valkey"
  engine_version             = var.engine_version
  parameter_group_name       = local.parameter_group
  node_type                  = var.node_type
  port                       = local.port
  cluster_mode               = "enabled"
  num_node_groups            = var.regions[var.primary_region].shards
  replicas_per_node_group    = var.replicas_per_shard
  automatic_failover_enabled = true
  multi_az_enabled           = true
  subnet_group_name          = aws_elasticache_subnet_group.redis[var.primary_region].name
  security_group_ids         = [aws_security_group.redis[var.primary_region].id]
  at_rest_encryption_enabled = true
  transit_encryption_enabled = true
  kms_key_id                 = aws_kms_key.redis[var.primary_region].arn
  auth_token                 = random_password.auth[var.primary_region].result
  snapshot_retention_limit   = var.snapshot_retention_days
  auto_minor_version_upgrade = true
  tags                       = local.common_tags
}

resource "aws_elasticache_global_replication_group" "writer" {
  region                               = var.primary_region
  global_replication_group_id_suffix   = var.name_prefix
  primary_replication_group_id         = aws_elasticache_replication_group.primary.id
  global_replication_group_description = "Tessera: the writer's Valkey, replicated to every region"
}

resource "aws_elasticache_replication_group" "secondary" {
  for_each = local.secondaries

  region                      = each.key
  replication_group_id        = "${var.name_prefix}-${each.key}-replica"
  description                 = "Tessera Valkey, global datastore secondary (read-only copy of the writer's)"
  global_replication_group_id = aws_elasticache_global_replication_group.writer.global_replication_group_id
  # Engine, node type and shard count come from the global datastore.
  replicas_per_node_group    = var.replicas_per_shard
  automatic_failover_enabled = true
  multi_az_enabled           = true
  subnet_group_name          = aws_elasticache_subnet_group.redis[each.key].name
  security_group_ids         = [aws_security_group.redis[each.key].id]
  # Inherited from the primary; stated so the plan shows no difference.
  at_rest_encryption_enabled = true
  transit_encryption_enabled = true
  kms_key_id                 = aws_kms_key.redis[each.key].arn
  snapshot_retention_limit   = var.snapshot_retention_days
  tags                       = local.common_tags
}

# --- each other region's writable Redis for its edges ---

resource "aws_elasticache_replication_group" "local" {
  for_each = local.secondaries

  region                     = each.key
  replication_group_id       = local.group_ids[each.key]
  description                = "Tessera Valkey for the ${each.key} edges: rate budgets, waiting rooms"
  engine                     = "valkey"
  engine_version             = var.engine_version
  parameter_group_name       = local.parameter_group
  node_type                  = var.node_type
  port                       = local.port
  cluster_mode               = "enabled"
  num_node_groups            = each.value.shards
  replicas_per_node_group    = var.replicas_per_shard
  automatic_failover_enabled = true
  multi_az_enabled           = true
  subnet_group_name          = aws_elasticache_subnet_group.redis[each.key].name
  security_group_ids         = [aws_security_group.redis[each.key].id]
  at_rest_encryption_enabled = true
  transit_encryption_enabled = true
  kms_key_id                 = aws_kms_key.redis[each.key].arn
  auth_token                 = random_password.auth[each.key].result
  snapshot_retention_limit   = var.snapshot_retention_days
  auto_minor_version_upgrade = true
  tags                       = local.common_tags
}

# --- TESSERA_REDIS_URL per region ---

resource "aws_secretsmanager_secret" "url" {
  for_each = var.regions

  region                  = each.key
  name                    = "${var.name_prefix}/redis/${each.key}/url"
  description             = "TESSERA_REDIS_URL of the ${each.key} services (TLS, AUTH token, the cluster's configuration endpoint)."
  kms_key_id              = aws_kms_key.redis[each.key].arn
  recovery_window_in_days = 7
  tags                    = local.common_tags
}

resource "aws_secretsmanager_secret_version" "url" {
  for_each = var.regions

  region    = each.key
  secret_id = aws_secretsmanager_secret.url[each.key].id
  # Cluster mode: the configuration endpoint, from which a cluster client learns every shard.
  secret_string = format(
    "rediss://:%s@%s:%d",
    random_password.auth[each.key].result,
    each.key == var.primary_region ? aws_elasticache_replication_group.primary.configuration_endpoint_address : aws_elasticache_replication_group.local[each.key].configuration_endpoint_address,
    local.port,
  )
}
