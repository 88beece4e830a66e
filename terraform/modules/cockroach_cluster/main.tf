# A multi-region CockroachDB Cloud (Advanced) cluster, the Tessera database and its SQL users.
#
# Primary region and survival goal. The writer's migrations (global_writer/db/migrate.py) make the
# database multi-region: `ALTER DATABASE ... PRIMARY REGION <first>` then `ADD REGION` for the
# others, holds / orders / claims `REGIONAL BY ROW`, venue and event metadata `GLOBAL`. They read
# the region list from TESSERA_DB_PRIMARY_REGION / TESSERA_DB_REGIONS, which the environment sets
# from this module's `database_regions` output, so the order of `regions` here (writer's home
# first) is the database's primary region. The survival goal stays CockroachDB's default, ZONE:
# every write commits within the primary region (3 nodes over 3 zones), which keeps the hold
# path's latency; a whole-region outage of the primary then stops writes until it returns or the
# primary region moves (docs/operations.md, "Recover a region"). `SURVIVE REGION FAILURE` (needs
# 3+ regions) would add a cross-region round trip to every commit.

data "cockroach_cluster_cert" "this" {
  id = cockroach_cluster.this.id
}

locals {
  # CockroachDB's names for the cloud regions, as `SHOW REGIONS` lists them (e.g. aws-us-east-1).
  database_regions = [for r in var.regions : "${lower(var.cloud_provider)}-${r.name}"]
  sql_host         = cockroach_cluster.this.regions[0].sql_dns
}

resource "cockroach_cluster" "this" {
  name              = var.cluster_name
  cloud_provider    = var.cloud_provider
  plan              = "ADVANCED"
  cockroach_version = var.cockroach_version
  delete_protection = var.delete_protection
  labels            = var.labels

  dedicated = {
    num_virtual_cpus = var.num_virtual_cpus
    storage_gib      = var.storage_gib
  }

  # The first region is the primary region (see above); the API keeps the order.
  regions = [for r in var.regions : { name = r.name, node_count = r.node_count }]

  backup_config = {
    enabled           = true
    frequency_minutes = 60
    retention_days    = var.backup_retention_days
  }
}

resource "cockroach_allow_list" "sql" {
  for_each = toset(var.allowed_cidrs)

  cluster_id = cockroach_cluster.this.id
  name       = "tessera ${each.value}"
  cidr_ip    = split("/", each.value)[0]
  cidr_mask  = tonumber(split("/", each.value)[1])
  sql        = true
  ui         = false
}

resource "cockroach_database" "tessera" {
  cluster_id = cockroach_cluster.this.id
  name       = var.database_name
}

resource "random_password" "sql" {
  for_each = var.sql_users

  length  = 40
  special = false # the value is also the userinfo part of a URL
}

resource "cockroach_sql_user" "user" {
  for_each = var.sql_users

  cluster_id = cockroach_cluster.this.id
  name       = each.value
  password   = random_password.sql[each.value].result
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

resource "aws_kms_key" "secrets" {
  region                  = var.secret_region
  description             = "${var.secret_name_prefix} CockroachDB connection secrets"
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
}

# The CA the cluster's certificates chain to, for sslmode=verify-full.
resource "aws_secretsmanager_secret" "ca" {
  region                  = var.secret_region
  kms_key_id              = aws_kms_key.secrets.arn
  name                    = "${var.secret_name_prefix}/cockroach/ca-cert"
  description             = "CA certificate of the CockroachDB cluster (PEM), for sslrootcert."
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "ca" {
  region        = var.secret_region
  secret_id     = aws_secretsmanager_secret.ca.id
  secret_string = data.cockroach_cluster_cert.this.cert
}

resource "aws_secretsmanager_secret" "url" {
  for_each = var.sql_users

  region                  = var.secret_region
  kms_key_id              = aws_kms_key.secrets.arn
  name                    = "${var.secret_name_prefix}/cockroach/${each.value}-url"
  description             = "TESSERA_DATABASE_URL for SQL user ${each.value} (primary region's SQL endpoint, verify-full TLS)."
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "url" {
  for_each = var.sql_users

  region    = var.secret_region
  secret_id = aws_secretsmanager_secret.url[each.value].id
  # verify-full against the cluster's own CA: the service's init container writes the `ca`
  # secret to sslrootcert_path before the tier starts (terraform/envs/*/main.tf).
  secret_string = "cockroachdb+asyncpg://${each.value}:${random_password.sql[each.value].result}@${local.sql_host}:26257/${cockroach_database.tessera.name}?sslmode=verify-full&sslrootcert=${var.sslrootcert_path}"
}
