# One JetStream cluster per region, each its own JetStream domain (named after its region); every
# region but the hub (the writer's home region) leaf-connects to the hub and mirrors its streams.
#
# The single source of truth is the tessera package's data, tessera/resources/nats (shipped in
# the wheel, read by the services and the local tooling), read here and nowhere copied:
#   - server/region.json and server/permissions.json: what every node's configuration has besides
#     its own values, and the account, users and permissions. ./server_config builds one node's
#     configuration from them with jsonencode, as tessera_ops.servers.nats_server_config builds
#     it with json.dumps for the local launcher and the tests;
#   - jetstream/*.json and jetstream/regional/*.json: the streams, bucket and mirrors. The
#     services apply them at start-up (the writer the hub's, the regional task's init container
#     `tessera jetstream apply --regional` its region's mirrors); this module reads them to name
#     the streams the read nodes consume and to check the mirrors against their sources.
#
# Secrets (passwords, the leaf URLs carrying the leaf password, TLS keys) never enter the
# rendered configuration: each node reads them from Secrets Manager into nats-server's
# environment at boot (bootstrap.sh.tftpl).

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  nats_dir    = "${path.module}/../../../tessera/resources/nats"
  permissions = jsondecode(file("${local.nats_dir}/server/permissions.json"))

  # The definitions tessera.jetstream loads: load_definitions() (the top folder) on the hub,
  # load_regional_definitions() (regional/) everywhere else.
  hub_definitions = {
    for f in fileset("${local.nats_dir}/jetstream", "*.json") :
    f => jsondecode(file("${local.nats_dir}/jetstream/${f}"))
  }
  regional_definitions = {
    for f in fileset("${local.nats_dir}/jetstream/regional", "*.json") :
    f => jsondecode(file("${local.nats_dir}/jetstream/regional/${f}"))
  }
  # Stream name -> its largest message, for every hub definition (a bucket's stream is KV_<bucket>).
  hub_streams = {
    for d in values(local.hub_definitions) :
    (d.kind == "kv" ? "KV_${d.bucket}" : d.name) => (d.kind == "kv" ? d.max_value_bytes : d.max_msg_bytes)
  }
  feed_stream     = one([for d in values(local.hub_definitions) : d.name if d.kind == "stream" && contains(try(d.subjects, []), "seats.>")])
  snapshot_stream = one([for d in values(local.hub_definitions) : "KV_${d.bucket}" if d.kind == "kv" && try(d.bucket, "") == "seatmap"])
  mirrors         = [for d in values(local.regional_definitions) : d if d.kind == "mirror"]
  mirror_of       = { for d in local.mirrors : d.source => d.name }

  # What the read nodes of each region consume (TESSERA_SEATS_STREAM, TESSERA_KV_STREAM): the
  # hub's own streams in the hub, the mirrors elsewhere.
  streams = {
    for region in keys(var.regions) : region => {
      seats = region == var.hub_region ? local.feed_stream : local.mirror_of[local.feed_stream]
      kv    = region == var.hub_region ? local.snapshot_stream : local.mirror_of[local.snapshot_stream]
    }
  }

  zone      = trimsuffix(var.dns_zone.name, ".")
  hub_leaf  = "leaf.nats.${var.hub_region}.${local.zone}"
  store_dir = "/var/lib/nats/jetstream"
  tls_dir   = "/etc/nats/tls"
  ports = {
    client  = 4222
    monitor = 8222
    cluster = 6222
    leaf    = 7422
  }
  # JetStream may fill 90% of the data volume; the rest is headroom for compaction.
  max_file_store_bytes = floor(var.volume_size_gib * 1073741824 * 0.9)

  client_hostnames = { for region in keys(var.regions) : region => "nats.${region}.${local.zone}" }

  nodes = merge([
    for region, cfg in var.regions : {
      for i in range(var.nodes_per_region) : "${region}/${i}" => {
        region    = region
        index     = i
        hub       = region == var.hub_region
        subnet_id = cfg.subnet_ids[i % length(cfg.subnet_ids)]
        hostname  = "nats-${i}.${region}.${local.zone}"
      }
    }
  ]...)

  # Every node's configuration file, built by ./server_config (below) from the node's values.
  server_configs = { for key, node in module.server_config : key => node.config }

  # Passwords: reader and admin in every region, writer, notifier and leaf in the hub only.
  users = merge(
    { for pair in setproduct(keys(var.regions), ["reader", "admin"]) : "${pair[0]}/${pair[1]}" => { region = pair[0], user = pair[1] } },
    { for user in ["writer", "notifier", "leaf"] : "${var.hub_region}/${user}" => { region = var.hub_region, user = user } },
  )
  # Client URLs the services get (as secrets): everything but the leaf user.
  client_users = { for key, u in local.users : key => u if u.user != "leaf" }

  # nats-server's environment on each region's nodes; values JSON-quoted (nats-server parses an
  # environment value as a configuration value).
  server_environment = {
    for region in keys(var.regions) : region => merge(
      {
        TESSERA_NATS_READER_PASSWORD = jsonencode(random_password.user["${region}/reader"].result)
        TESSERA_NATS_ADMIN_PASSWORD  = jsonencode(random_password.user["${region}/admin"].result)
      },
      region == var.hub_region ? {
        TESSERA_NATS_WRITER_PASSWORD   = jsonencode(random_password.user["${region}/writer"].result)
        TESSERA_NATS_NOTIFIER_PASSWORD = jsonencode(random_password.user["${region}/notifier"].result)
        TESSERA_NATS_LEAF_PASSWORD     = jsonencode(random_password.user["${region}/leaf"].result)
      } : {},
      region != var.hub_region ? {
        TESSERA_NATS_HUB_LEAF_URLS = jsonencode([
          "tls://${local.permissions.leaf.user}:${random_password.user["${var.hub_region}/leaf"].result}@${local.hub_leaf}:${local.ports.leaf}"
        ])
      } : {},
    )
  }

  common_tags = merge(var.tags, { "tessera:component" = "nats" })
}

# One configuration per node: region.json and permissions.json with the node's own values (the
# variables of tessera_ops.servers.NatsServerSettings, under the same names).
module "server_config" {
  source   = "./server_config"
  for_each = local.nodes

  server_name            = "${each.value.region}-nats-${each.value.index}"
  client_listen          = "0.0.0.0:${local.ports.client}"
  monitor_listen         = "0.0.0.0:${local.ports.monitor}"
  store_dir              = local.store_dir
  domain                 = each.value.region
  hub                    = each.value.hub
  max_file_store_bytes   = local.max_file_store_bytes
  max_memory_store_bytes = var.max_memory_store_bytes
  leaf_listen            = each.value.hub ? "0.0.0.0:${local.ports.leaf}" : null
  cluster = var.nodes_per_region > 1 ? {
    name   = "${var.name_prefix}-${each.value.region}"
    listen = "0.0.0.0:${local.ports.cluster}"
    routes = [for i in range(var.nodes_per_region) : "nats-route://nats-${i}.${each.value.region}.${local.zone}:${local.ports.cluster}"]
  } : null
  tls = {
    cert_file = "${local.tls_dir}/server.pem"
    key_file  = "${local.tls_dir}/server-key.pem"
    ca_file   = "${local.tls_dir}/ca.pem"
  }
}

# The definitions are data: refuse a deployment whose mirrors could not follow their sources.
resource "terraform_data" "definitions" {
  input = {
    hub      = keys(local.hub_definitions)
    regional = keys(local.regional_definitions)
  }

  lifecycle {
    precondition {
      condition     = contains(keys(var.regions), var.hub_region)
      error_message = "hub_region must be one of regions."
    }
    precondition {
      condition     = alltrue([for m in local.mirrors : contains(keys(local.hub_streams), m.source)])
      error_message = "Every mirror in tessera/resources/nats/jetstream/regional/ must mirror a stream defined in tessera/resources/nats/jetstream/."
    }
    precondition {
      condition     = alltrue([for m in local.mirrors : m.max_msg_bytes >= local.hub_streams[m.source]])
      error_message = "A mirror's max_msg_bytes must be at least its source's, or it stalls on the first larger message."
    }
    precondition {
      condition     = local.feed_stream != null && local.snapshot_stream != null
      error_message = "tessera/resources/nats/jetstream/ must define the change feed stream (subjects seats.>) and the seatmap bucket."
    }
  }
}

data "aws_ssm_parameter" "ami" {
  for_each = var.regions

  region = each.key
  name   = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-${var.architecture}"
}

data "aws_subnet" "node" {
  for_each = local.nodes

  region = each.value.region
  id     = each.value.subnet_id
}

# --- keys and secrets ---

resource "aws_kms_key" "nats" {
  for_each = var.regions

  region                  = each.key
  description             = "${var.name_prefix} NATS ${each.key}: data volumes, configuration, secrets, logs"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministers"
        Effect    = "Allow"
        Principal = { AWS = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogs"
        Effect    = "Allow"
        Principal = { Service = "logs.${each.key}.amazonaws.com" }
        Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
      },
    ]
  })
  tags = local.common_tags
}

resource "random_password" "user" {
  for_each = local.users

  length  = 40
  special = false # the value is also the userinfo part of a URL
}

resource "aws_secretsmanager_secret" "server" {
  for_each = var.regions

  region                  = each.key
  name                    = "${var.name_prefix}/nats/${each.key}/server-environment"
  description             = "nats-server environment of the ${each.key} nodes: user passwords, and the hub's leaf URLs outside the hub."
  kms_key_id              = aws_kms_key.nats[each.key].arn
  recovery_window_in_days = 7
  tags                    = local.common_tags
}

resource "aws_secretsmanager_secret_version" "server" {
  for_each = var.regions

  region        = each.key
  secret_id     = aws_secretsmanager_secret.server[each.key].id
  secret_string = jsonencode(local.server_environment[each.key])
}

resource "aws_secretsmanager_secret" "client_url" {
  for_each = local.client_users

  region                  = each.value.region
  name                    = "${var.name_prefix}/nats/${each.value.region}/${each.value.user}-url"
  description             = "TESSERA_NATS_URL for a service connecting to the ${each.value.region} NATS cluster as ${each.value.user}."
  kms_key_id              = aws_kms_key.nats[each.value.region].arn
  recovery_window_in_days = 7
  tags                    = local.common_tags
}

resource "aws_secretsmanager_secret_version" "client_url" {
  for_each = local.client_users

  region        = each.value.region
  secret_id     = aws_secretsmanager_secret.client_url[each.key].id
  secret_string = "nats://${each.value.user}:${random_password.user[each.key].result}@${local.client_hostnames[each.value.region]}:${local.ports.client}"
}

# --- TLS: a CA for the deployment, one certificate per node (server and client use) ---

resource "tls_private_key" "ca" {
  algorithm   = "ECDSA"
  ecdsa_curve = "P256"
}

resource "tls_self_signed_cert" "ca" {
  private_key_pem       = tls_private_key.ca.private_key_pem
  is_ca_certificate     = true
  validity_period_hours = var.tls_validity_hours * 2
  early_renewal_hours   = var.tls_early_renewal_hours
  allowed_uses          = ["cert_signing", "crl_signing"]

  subject {
    common_name  = "${var.name_prefix} NATS CA"
    organization = "Tessera"
  }
}

resource "tls_private_key" "node" {
  for_each = local.nodes

  algorithm   = "ECDSA"
  ecdsa_curve = "P256"
}

resource "tls_cert_request" "node" {
  for_each = local.nodes

  private_key_pem = tls_private_key.node[each.key].private_key_pem
  dns_names = concat(
    [each.value.hostname, local.client_hostnames[each.value.region]],
    each.value.hub ? [local.hub_leaf] : [],
  )

  subject {
    common_name  = each.value.hostname
    organization = "Tessera"
  }
}

resource "tls_locally_signed_cert" "node" {
  for_each = local.nodes

  cert_request_pem      = tls_cert_request.node[each.key].cert_request_pem
  ca_private_key_pem    = tls_private_key.ca.private_key_pem
  ca_cert_pem           = tls_self_signed_cert.ca.cert_pem
  validity_period_hours = var.tls_validity_hours
  early_renewal_hours   = var.tls_early_renewal_hours
  # Routes and leaf connections authenticate both ways: each node is server and client.
  allowed_uses = ["digital_signature", "key_encipherment", "server_auth", "client_auth"]
}

resource "aws_secretsmanager_secret" "tls" {
  for_each = local.nodes

  region                  = each.value.region
  name                    = "${var.name_prefix}/nats/${each.value.region}/node-${each.value.index}-tls"
  description             = "TLS certificate, key and CA of NATS node ${each.value.hostname}."
  kms_key_id              = aws_kms_key.nats[each.value.region].arn
  recovery_window_in_days = 7
  tags                    = local.common_tags
}

resource "aws_secretsmanager_secret_version" "tls" {
  for_each = local.nodes

  region    = each.value.region
  secret_id = aws_secretsmanager_secret.tls[each.key].id
  secret_string = jsonencode({
    cert = tls_locally_signed_cert.node[each.key].cert_pem
    key  = tls_private_key.node[each.key].private_key_pem
    ca   = tls_self_signed_cert.ca.cert_pem
  })
}

# --- configuration, delivered through SSM so a change does not replace the node ---

resource "aws_ssm_parameter" "config" {
  for_each = local.nodes

  region      = each.value.region
  name        = "/${var.name_prefix}/nats/${each.value.region}/node-${each.value.index}/nats.conf"
  description = "nats-server configuration of ${each.value.hostname}, built from tessera/resources/nats/server."
  type        = "SecureString"
  tier        = "Advanced" # 8 KB: a hub's file (~2.4 KB) grows with users, subjects and routes
  key_id      = aws_kms_key.nats[each.value.region].arn
  value       = local.server_configs[each.key]
  tags        = local.common_tags
}

# --- network ---

resource "aws_security_group" "nats" {
  for_each = var.regions

  region      = each.key
  name        = "${var.name_prefix}-nats-${each.key}"
  description = "NATS nodes of ${each.key}: clients, monitoring, routes, leaf-node connections"
  vpc_id      = each.value.vpc_id
  tags        = local.common_tags
}

resource "aws_vpc_security_group_ingress_rule" "client" {
  for_each = { for pair in flatten([for region, cfg in var.regions : [for cidr in cfg.client_cidrs : { region = region, cidr = cidr }]]) : "${pair.region}/${pair.cidr}" => pair }

  region            = each.value.region
  security_group_id = aws_security_group.nats[each.value.region].id
  description       = "NATS clients (the services of the region)"
  ip_protocol       = "tcp"
  from_port         = local.ports.client
  to_port           = local.ports.client
  cidr_ipv4         = each.value.cidr
}

resource "aws_vpc_security_group_ingress_rule" "monitor" {
  for_each = { for pair in flatten([for region, cfg in var.regions : [for cidr in cfg.client_cidrs : { region = region, cidr = cidr }]]) : "${pair.region}/${pair.cidr}" => pair }

  region            = each.value.region
  security_group_id = aws_security_group.nats[each.value.region].id
  description       = "NATS monitoring (/healthz for the load balancer, /jsz, /leafz for operators)"
  ip_protocol       = "tcp"
  from_port         = local.ports.monitor
  to_port           = local.ports.monitor
  cidr_ipv4         = each.value.cidr
}

resource "aws_vpc_security_group_ingress_rule" "routes" {
  for_each = var.regions

  region                       = each.key
  security_group_id            = aws_security_group.nats[each.key].id
  description                  = "NATS cluster routes between the region's nodes (mutual TLS)"
  ip_protocol                  = "tcp"
  from_port                    = local.ports.cluster
  to_port                      = local.ports.cluster
  referenced_security_group_id = aws_security_group.nats[each.key].id
}

resource "aws_vpc_security_group_ingress_rule" "leaf" {
  for_each = { for pair in flatten([for region, cfg in var.regions : [for cidr in cfg.client_cidrs : { region = region, cidr = cidr }] if region != var.hub_region]) : "${pair.region}/${pair.cidr}" => pair }

  region            = var.hub_region
  security_group_id = aws_security_group.nats[var.hub_region].id
  description       = "Leaf-node connections from ${each.value.region} (mutual TLS, leaf credentials)"
  ip_protocol       = "tcp"
  from_port         = local.ports.leaf
  to_port           = local.ports.leaf
  cidr_ipv4         = each.value.cidr
}

resource "aws_vpc_security_group_egress_rule" "all" {
  for_each = var.regions

  region            = each.key
  security_group_id = aws_security_group.nats[each.key].id
  description       = "Routes, the hub's leaf port, Secrets Manager, SSM and the package index"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

# Services connect to nats.<region>.<zone> (a network load balancer over the region's nodes);
# once connected, the client learns the cluster's other nodes for reconnects.
resource "aws_lb" "nats" {
  for_each = var.regions

  region                           = each.key
  name                             = substr("${var.name_prefix}-nats-${each.key}", 0, 32)
  internal                         = true
  load_balancer_type               = "network"
  subnets                          = each.value.subnet_ids
  security_groups                  = [aws_security_group.nats[each.key].id]
  enable_cross_zone_load_balancing = true
  enable_deletion_protection       = var.deletion_protection
  tags                             = local.common_tags
}

resource "aws_lb_target_group" "client" {
  for_each = var.regions

  region      = each.key
  name        = substr("${var.name_prefix}-nc-${each.key}", 0, 32)
  port        = local.ports.client
  protocol    = "TCP"
  target_type = "instance"
  vpc_id      = each.value.vpc_id

  health_check {
    protocol = "HTTP"
    port     = tostring(local.ports.monitor)
    path     = "/healthz?js-enabled-only=true"
  }

  tags = local.common_tags
}

resource "aws_lb_listener" "client" {
  for_each = var.regions

  region            = each.key
  load_balancer_arn = aws_lb.nats[each.key].arn
  port              = local.ports.client
  protocol          = "TCP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.client[each.key].arn
  }
}

resource "aws_lb_target_group" "leaf" {
  region      = var.hub_region
  name        = substr("${var.name_prefix}-nl-${var.hub_region}", 0, 32)
  port        = local.ports.leaf
  protocol    = "TCP"
  target_type = "instance"
  vpc_id      = var.regions[var.hub_region].vpc_id

  health_check {
    protocol = "HTTP"
    port     = tostring(local.ports.monitor)
    path     = "/healthz?js-enabled-only=true"
  }

  tags = local.common_tags
}

# TLS passes through (TCP): the nodes terminate it and check the regions' client certificates.
resource "aws_lb_listener" "leaf" {
  region            = var.hub_region
  load_balancer_arn = aws_lb.nats[var.hub_region].arn
  port              = local.ports.leaf
  protocol          = "TCP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.leaf.arn
  }
}

resource "aws_lb_target_group_attachment" "client" {
  for_each = local.nodes

  region           = each.value.region
  target_group_arn = aws_lb_target_group.client[each.value.region].arn
  target_id        = aws_instance.node[each.key].id
  port             = local.ports.client
}

resource "aws_lb_target_group_attachment" "leaf" {
  for_each = { for key, node in local.nodes : key => node if node.hub }

  region           = each.value.region
  target_group_arn = aws_lb_target_group.leaf.arn
  target_id        = aws_instance.node[each.key].id
  port             = local.ports.leaf
}

resource "aws_route53_record" "node" {
  for_each = local.nodes

  zone_id = var.dns_zone.id
  name    = each.value.hostname
  type    = "A"
  ttl     = 60
  records = [aws_instance.node[each.key].private_ip]
}

resource "aws_route53_record" "client" {
  for_each = var.regions

  zone_id = var.dns_zone.id
  name    = local.client_hostnames[each.key]
  type    = "A"

  alias {
    name                   = aws_lb.nats[each.key].dns_name
    zone_id                = aws_lb.nats[each.key].zone_id
    evaluate_target_health = true
  }
}

resource "aws_route53_record" "leaf" {
  zone_id = var.dns_zone.id
  name    = local.hub_leaf
  type    = "A"

  alias {
    name                   = aws_lb.nats[var.hub_region].dns_name
    zone_id                = aws_lb.nats[var.hub_region].zone_id
    evaluate_target_health = true
  }
}

# --- the nodes ---

resource "aws_iam_role" "node" {
  name = "${var.name_prefix}-nats-node"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ec2.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = local.common_tags
}

# Session Manager and Run Command (docs/operations.md rolls configuration changes with it).
resource "aws_iam_role_policy_attachment" "ssm_core" {
  role       = aws_iam_role.node.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_role_policy" "node" {
  name = "read-own-configuration"
  role = aws_iam_role.node.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = concat([for s in aws_secretsmanager_secret.server : s.arn], [for s in aws_secretsmanager_secret.tls : s.arn])
      },
      {
        Effect   = "Allow"
        Action   = ["ssm:GetParameter"]
        Resource = [for p in aws_ssm_parameter.config : p.arn]
      },
      {
        Effect   = "Allow"
        Action   = ["kms:Decrypt"]
        Resource = [for k in aws_kms_key.nats : k.arn]
      },
      {
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
        Resource = [for g in aws_cloudwatch_log_group.nats : "${g.arn}:*"]
      },
    ]
  })
}

resource "aws_iam_instance_profile" "node" {
  name = "${var.name_prefix}-nats-node"
  role = aws_iam_role.node.name
  tags = local.common_tags
}

resource "aws_cloudwatch_log_group" "nats" {
  for_each = var.regions

  region            = each.key
  name              = "/${var.name_prefix}/nats/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.nats[each.key].arn
  tags              = local.common_tags
}

# JetStream's store outlives the instance: a replaced node re-attaches it and catches up from
# its peers for whatever it missed.
resource "aws_ebs_volume" "data" {
  for_each = local.nodes

  region            = each.value.region
  availability_zone = data.aws_subnet.node[each.key].availability_zone
  size              = var.volume_size_gib
  type              = "gp3"
  iops              = var.volume_iops
  encrypted         = true
  kms_key_id        = aws_kms_key.nats[each.value.region].arn
  tags              = merge(local.common_tags, { Name = "${var.name_prefix}-${each.value.region}-nats-${each.value.index}-data" })
}

resource "aws_instance" "node" {
  for_each = local.nodes

  region                 = each.value.region
  ami                    = data.aws_ssm_parameter.ami[each.value.region].insecure_value
  instance_type          = var.instance_type
  subnet_id              = each.value.subnet_id
  vpc_security_group_ids = [aws_security_group.nats[each.value.region].id]
  iam_instance_profile   = aws_iam_instance_profile.node.name
  monitoring             = true
  ebs_optimized          = true

  user_data = templatefile("${path.module}/bootstrap.sh.tftpl", {
    region              = each.value.region
    config_parameter    = aws_ssm_parameter.config[each.key].name
    server_secret       = aws_secretsmanager_secret.server[each.value.region].arn
    tls_secret          = aws_secretsmanager_secret.tls[each.key].arn
    volume_id           = aws_ebs_volume.data[each.key].id
    log_group           = aws_cloudwatch_log_group.nats[each.value.region].name
    nats_server_version = var.nats_server_version
    pip_index_url       = var.pip_index_url
    tls_dir             = local.tls_dir
  })

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    encrypted   = true
    kms_key_id  = aws_kms_key.nats[each.value.region].arn
    volume_type = "gp3"
    volume_size = 20
  }

  tags = merge(local.common_tags, { Name = "${var.name_prefix}-${each.value.region}-nats-${each.value.index}" })

  lifecycle {
    # A new Amazon Linux image must not replace a running node; roll nodes deliberately.
    ignore_changes = [ami]
  }
}

resource "aws_volume_attachment" "data" {
  for_each = local.nodes

  region      = each.value.region
  device_name = "/dev/sdf"
  volume_id   = aws_ebs_volume.data[each.key].id
  instance_id = aws_instance.node[each.key].id
}
