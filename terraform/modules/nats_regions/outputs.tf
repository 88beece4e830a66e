output "hub_domain" {
  description = "The hub's JetStream domain (the writer's home region): the regional mirrors' source domain, passed to `tessera jetstream apply --hub-domain`."
  value       = var.hub_region
}

output "domains" {
  description = "Each region's JetStream domain (its region name)."
  value       = { for region in keys(var.regions) : region => region }
}

output "replicas" {
  description = "Replica count of every stream and mirror (one per node of a region): TESSERA_JETSTREAM_REPLICAS for the writer, --replicas for the definitions job."
  value       = var.nodes_per_region
}

output "streams" {
  description = "Per region, the streams its read nodes consume (TESSERA_SEATS_STREAM, TESSERA_KV_STREAM), from the tessera/resources/nats/jetstream definitions: the hub's own in the hub, the mirrors elsewhere."
  value       = local.streams
}

output "client_hostnames" {
  description = "Per region, the name services connect to (a load balancer over the region's nodes, port 4222)."
  value       = local.client_hostnames
}

output "client_url_secret_arns" {
  description = "Per region, per user (writer and notifier in the hub only, reader, admin), the ARN of the Secrets Manager secret holding TESSERA_NATS_URL with that user's credentials."
  value = {
    for region in keys(var.regions) : region => {
      for key, u in local.client_users : u.user => aws_secretsmanager_secret.client_url[key].arn if u.region == region
    }
  }
}

output "leaf_connections" {
  description = "Each non-hub region and the hub leaf-node endpoint its nodes connect to (mutual TLS, leaf credentials)."
  value       = { for region in keys(var.regions) : region => "${local.hub_leaf}:${local.ports.leaf}" if region != var.hub_region }
}

output "server_configs" {
  description = "Every node's rendered nats-server configuration (no secrets in it), keyed <region>/<index>: what `terraform plan` shows changing before a rollout."
  value       = local.server_configs
}

output "security_group_ids" {
  description = "Per region, the NATS nodes' security group."
  value       = { for region, sg in aws_security_group.nats : region => sg.id }
}

output "ca_certificate_pem" {
  description = "The CA of the NATS nodes' certificates (for operators' `nats --tlsca` on routes or leaf ports)."
  value       = tls_self_signed_cert.ca.cert_pem
}

output "jetstream_definition_files" {
  description = "The tessera/resources/nats/jetstream definition files this deployment reads: the hub's and the regions' (the services apply the same files)."
  value = {
    hub      = sort(keys(local.hub_definitions))
    regional = sort(keys(local.regional_definitions))
  }
}

output "load_balancers" {
  description = "Per region, the client network load balancer and its target group (CloudWatch's LoadBalancer and TargetGroup dimensions) and how many nodes should be healthy behind it: the observability module's node-health alarm."
  value = {
    for region in keys(var.regions) : region => {
      arn_suffix              = aws_lb.nats[region].arn_suffix
      target_group_arn_suffix = aws_lb_target_group.client[region].arn_suffix
      nodes                   = var.nodes_per_region
    }
  }
}
