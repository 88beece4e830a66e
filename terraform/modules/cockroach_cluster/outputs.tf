output "cluster_id" {
  description = "CockroachDB Cloud cluster id."
  value       = cockroach_cluster.this.id
}

output "sql_hosts" {
  description = "Per cloud region, the cluster's SQL host name."
  value       = { for r in cockroach_cluster.this.regions : r.name => r.sql_dns }
}

output "database_regions" {
  description = "The database's regions in CockroachDB's naming, primary first: TESSERA_DB_PRIMARY_REGION is the first, TESSERA_DB_REGIONS all of them (comma-separated) for the writer's migrations."
  value       = local.database_regions
}

output "url_secret_arns" {
  description = "Per SQL user, the ARN of the secret holding its full TESSERA_DATABASE_URL."
  value       = { for user, secret in aws_secretsmanager_secret.url : user => secret.arn }
}

output "writer_url_secret_arn" {
  description = "The writer's TESSERA_DATABASE_URL secret."
  value       = aws_secretsmanager_secret.url[var.writer_user].arn
}

output "ca_secret_arn" {
  description = "Secret holding the cluster's CA certificate (PEM)."
  value       = aws_secretsmanager_secret.ca.arn
}

output "sslrootcert_path" {
  description = "The path the URLs name for the CA certificate (sslrootcert): write the ca_secret_arn secret there before the service connects."
  value       = var.sslrootcert_path
}
