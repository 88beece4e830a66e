output "config" {
  description = "The server's nats-server configuration file (no secrets in it: their environment references)."
  value       = local.text
}
