# A Tessera environment, composed only from terraform/modules. This file is identical in every
# environment (tests/unit/terraform checks it): staging rehearses exactly what production runs;
# environments differ only in variables.tf defaults and their tfvars.
#
#   regions[0] (the writer's home)       every region
#   ─────────────────────────────────   ───────────────────────────────────────────────
#   writer (ECS) ── CockroachDB primary  edge (ECS, public ALB) ◄── CloudFront + WAF, only
#   NATS hub (3 nodes, streams)            with the origin secret header; internal ALB for
#   Valkey global datastore primary        /metrics and the admin API (from the VPC only)
#                                        regional (ECS, internal ALB) ◄── NATS (3 nodes,
#                                          mirrors, leaf-connected to the hub)
#                                        Valkey (writable; secondary of the global datastore)

locals {
  name       = "tessera-${var.environment}"
  hub_region = var.regions[0]
  zone_name  = trimsuffix(var.dns_zone.name, ".")

  origin_hostname   = "origin.${local.zone_name}"
  writer_hostname   = "writer.${local.zone_name}"
  regional_hostname = { for r in var.regions : r => "regional.${r}.${local.zone_name}" }
  edge_hostname     = { for r in var.regions : r => "edge.${r}.${local.zone_name}" }
  all_vpc_cidrs     = [for r in var.regions : var.networks[r].vpc_cidr]
  # The edges' internal listener: /metrics and the waiting room's admin API, never public.
  edge_internal_port  = 9100
  edge_admin_hostname = { for r in var.regions : r => "edge-admin.${r}.${local.zone_name}" }

  # Settings every tier that verifies fans reads: tokens are checked against the identity
  # provider's published keys; no tier holds a secret that could mint one.
  identity_environment = {
    TESSERA_JWKS_URL     = var.identity.jwks_url
    TESSERA_JWT_ISSUER   = var.identity.jwt_issuer
    TESSERA_JWT_AUDIENCE = var.identity.jwt_audience
  }
  production_environment = { TESSERA_PRODUCTION = tostring(var.production) }
  # Valkey runs in cluster mode (redis module): TESSERA_REDIS_URL is the configuration endpoint.
  redis_environment = { TESSERA_REDIS_CLUSTER = "true" }

  # Announced onsales: the windows in which the edges' and read nodes' floors are raised.
  onsale_windows = [
    for o in var.onsales : {
      name           = o.name
      from           = timeadd(o.starts_at, "-${o.scale_up_minutes_before}m")
      until          = timeadd(o.starts_at, "${o.duration_minutes}m")
      edge           = o.edge_min_tasks
      edge_by_region = o.edge_min_tasks_by_region
      regional       = o.regional_min_tasks
    }
  ]

  tags = { "tessera:environment" = var.environment }
}

module "database" {
  source = "../../modules/cockroach_cluster"

  cluster_name       = local.name
  regions            = [for r in var.regions : { name = r, node_count = var.database.nodes_per_region }]
  num_virtual_cpus   = var.database.num_virtual_cpus
  storage_gib        = var.database.storage_gib
  allowed_cidrs      = concat(var.networks[local.hub_region].nat_cidrs, var.operator_cidrs)
  secret_region      = local.hub_region
  secret_name_prefix = local.name
  labels             = { environment = var.environment }
}

module "nats" {
  source = "../../modules/nats_regions"

  name_prefix = local.name
  hub_region  = local.hub_region
  regions = {
    for r in var.regions : r => {
      vpc_id       = var.networks[r].vpc_id
      subnet_ids   = var.networks[r].private_subnet_ids
      client_cidrs = [var.networks[r].vpc_cidr]
    }
  }
  dns_zone         = var.dns_zone
  nodes_per_region = 3
  instance_type    = var.nats.instance_type
  volume_size_gib  = var.nats.volume_size_gib
  tags             = local.tags
}

module "redis" {
  source = "../../modules/redis"

  name_prefix    = local.name
  primary_region = local.hub_region
  regions = {
    for r in var.regions : r => {
      vpc_id        = var.networks[r].vpc_id
      subnet_ids    = var.networks[r].private_subnet_ids
      allowed_cidrs = [var.networks[r].vpc_cidr]
      shards        = lookup(var.redis.shards, r, 1)
    }
  }
  node_type          = var.redis.node_type
  replicas_per_shard = var.redis.replicas_per_shard
  tags               = local.tags
}

# --- the services ---

module "writer" {
  source = "../../modules/service"

  name       = "${local.name}-writer"
  tier       = "writer"
  region     = local.hub_region
  image      = var.image
  cpu        = var.capacity.writer.cpu
  memory     = var.capacity.writer.memory
  vpc_id     = var.networks[local.hub_region].vpc_id
  subnet_ids = var.networks[local.hub_region].private_subnet_ids
  scaling = {
    min                = var.capacity.writer.min
    max                = var.capacity.writer.max
    cpu_target_percent = var.capacity.writer.cpu_target_percent
  }
  environment = merge(local.identity_environment, local.production_environment, local.redis_environment, {
    TESSERA_JETSTREAM_REPLICAS = tostring(module.nats.replicas)
    TESSERA_DB_PRIMARY_REGION  = module.database.database_regions[0]
    TESSERA_DB_REGIONS         = join(",", module.database.database_regions)
    TESSERA_DB_CA_PATH         = module.database.sslrootcert_path
    TESSERA_PAYMENT_PROVIDER   = var.payment_provider
    # Each writer task writes its own address into the leases it holds, and the others forward
    # its events' writes there (docs/operations.md, "Several writers"); {host} is the task's IP,
    # 8000 the service module's port.
    TESSERA_WRITER_ADVERTISE_URL = "http://{host}:8000"
  })
  # ... and the writers must reach each other there.
  peer_ingress = true
  secret_arns = {
    TESSERA_DATABASE_URL = module.database.writer_url_secret_arn
    TESSERA_REDIS_URL    = module.redis.url_secret_arns[local.hub_region]
    TESSERA_NATS_URL     = module.nats.client_url_secret_arns[local.hub_region]["writer"]
  }
  # One secret per purpose: a leaked admission secret cannot call the admin API, and so on.
  secret_names = merge(
    {
      TESSERA_ADMIN_KEY              = var.app_secret_names.admin_key
      TESSERA_EDGE_WRITER_CREDENTIAL = var.app_secret_names.edge_writer_credential
      TESSERA_TICKET_SIGNING_KEYS    = var.app_secret_names.ticket_signing_keys
      TESSERA_DOOR_STAFF_KEYS        = var.app_secret_names.door_staff_keys
    },
    var.payment_provider == "stripe" ? {
      TESSERA_STRIPE_API_KEY        = var.app_secret_names.stripe_api_key
      TESSERA_STRIPE_WEBHOOK_SECRET = var.app_secret_names.stripe_webhook_secret
    } : {},
  )
  # The database URL's sslrootcert: the cluster's CA, written before the writer starts.
  init_command     = ["python", "-c", "import os, pathlib; pathlib.Path(os.environ['TESSERA_DB_CA_PATH']).write_text(os.environ['TESSERA_DB_CA'])"]
  init_secret_arns = { TESSERA_DB_CA = module.database.ca_secret_arn }
  load_balancer = {
    internal      = true
    subnet_ids    = var.networks[local.hub_region].private_subnet_ids
    ingress_cidrs = local.all_vpc_cidrs # every region's edges send writes here
    hostname      = local.writer_hostname
    zone_id       = var.dns_zone.id
  }
  tags = local.tags
}

module "regional" {
  source   = "../../modules/service"
  for_each = toset(var.regions)

  name       = "${local.name}-regional-${each.key}"
  tier       = "regional"
  region     = each.key
  image      = var.image
  cpu        = var.capacity.regional.cpu
  memory     = var.capacity.regional.memory
  vpc_id     = var.networks[each.key].vpc_id
  subnet_ids = var.networks[each.key].private_subnet_ids
  scaling = {
    min                 = var.capacity.regional.min
    max                 = var.capacity.regional.max
    cpu_target_percent  = var.capacity.regional.cpu_target_percent
    requests_per_target = var.capacity.regional.requests_per_task_per_min
  }
  environment = merge(local.identity_environment, local.production_environment, {
    TESSERA_WRITER_URL   = module.writer.url
    TESSERA_SEATS_STREAM = module.nats.streams[each.key].seats
    TESSERA_KV_STREAM    = module.nats.streams[each.key].kv
  })
  # The read node connects as `reader`: it may only read its region's streams.
  secret_arns = { TESSERA_NATS_URL = module.nats.client_url_secret_arns[each.key]["reader"] }
  scheduled_minimums = [
    for w in local.onsale_windows : { name = w.name, from = w.from, until = w.until, min = w.regional }
  ]
  # Outside the hub, the region's mirrors (tessera/resources/nats/jetstream/regional/, package
  # data of the image's tessera) are applied first, as admin.
  init_command = each.key == local.hub_region ? [] : [
    "python", "-m", "tessera_ops.cli", "jetstream", "apply", "--regional",
    "--hub-domain", module.nats.hub_domain, "--replicas", tostring(module.nats.replicas),
  ]
  init_secret_arns = each.key == local.hub_region ? {} : { TESSERA_NATS_URL = module.nats.client_url_secret_arns[each.key]["admin"] }
  load_balancer = {
    internal      = true
    subnet_ids    = var.networks[each.key].private_subnet_ids
    ingress_cidrs = [var.networks[each.key].vpc_cidr]
    hostname      = local.regional_hostname[each.key]
    zone_id       = var.dns_zone.id
  }
  tags = local.tags
}

module "edge" {
  source   = "../../modules/service"
  for_each = toset(var.regions)

  name       = "${local.name}-edge-${each.key}"
  tier       = "edge"
  region     = each.key
  image      = var.image
  cpu        = var.capacity.edge.cpu
  memory     = var.capacity.edge.memory
  vpc_id     = var.networks[each.key].vpc_id
  subnet_ids = var.networks[each.key].private_subnet_ids
  scaling = {
    min                 = var.capacity.edge.min
    max                 = var.capacity.edge.max
    cpu_target_percent  = var.capacity.edge.cpu_target_percent
    requests_per_target = var.capacity.edge.requests_per_task_per_min
  }
  environment = merge(
    local.identity_environment,
    local.production_environment,
    local.redis_environment,
    {
      TESSERA_ORIGIN_URLS = module.regional[each.key].url
      TESSERA_WRITER_URL  = module.writer.url
      # The load balancer (VPC) and CloudFront append to X-Forwarded-For: believe them.
      TESSERA_TRUSTED_PROXIES    = join(",", concat([var.networks[each.key].vpc_cidr], module.cdn.origin_facing_cidrs[each.key]))
      TESSERA_EDGE_INTERNAL_PORT = tostring(local.edge_internal_port)
      # The internal load balancer reaches the task on its address, as the public one does.
      TESSERA_EDGE_INTERNAL_HOST = "0.0.0.0"
      # The header CloudFront sends the origin secret in: the edges check it too.
      TESSERA_EDGE_ORIGIN_HEADER = module.cdn.origin_header_name
    },
    var.edge_rate_limits == null ? {} : { TESSERA_RATE_LIMITS = var.edge_rate_limits },
  )
  secret_arns = {
    TESSERA_REDIS_URL = module.redis.url_secret_arns[each.key]
    # JSON {"previous", "current", "next"}: the X-Origin-Secret values to accept (edge_cdn).
    TESSERA_EDGE_ORIGIN_SECRETS = module.cdn.origin_secret_arns[each.key]
  }
  # The edges' admin key is theirs alone: a leaked edge key cannot create events on the writer.
  secret_names = {
    TESSERA_ADMISSION_SECRET       = var.app_secret_names.admission_secret
    TESSERA_ADMIN_KEY              = var.app_secret_names.edge_admin_key
    TESSERA_EDGE_WRITER_CREDENTIAL = var.app_secret_names.edge_writer_credential
  }
  # CloudFront only, and only our distribution: the security group admits CloudFront's
  # addresses, the listener forwards only requests carrying the origin secret, and never
  # /metrics or the admin routes (those are on the internal listener).
  load_balancer = {
    internal                = false
    subnet_ids              = var.networks[each.key].public_subnet_ids
    ingress_prefix_list_ids = [module.cdn.origin_facing_prefix_list_ids[each.key]]
    hostname                = local.edge_hostname[each.key]
    extra_certificate_names = [local.origin_hostname]
    zone_id                 = var.dns_zone.id
    origin_header_name      = module.cdn.origin_header_name
    blocked_paths           = ["/metrics", "/metrics/*", "/v1/admin", "/v1/admin/*"]
  }
  origin_secret_values = module.cdn.origin_secret_values
  internal_listener = {
    port          = local.edge_internal_port
    subnet_ids    = var.networks[each.key].private_subnet_ids
    ingress_cidrs = distinct(concat([var.networks[each.key].vpc_cidr], var.operator_cidrs))
    hostname      = local.edge_admin_hostname[each.key]
    zone_id       = var.dns_zone.id
  }
  scheduled_minimums = [
    for w in local.onsale_windows : { name = w.name, from = w.from, until = w.until, min = lookup(w.edge_by_region, each.key, w.edge) }
  ]
  tags = local.tags
}

module "notifier" {
  source = "../../modules/service"
  count  = var.notifier.enabled ? 1 : 0

  name       = "${local.name}-notifier"
  tier       = "notifier"
  region     = local.hub_region
  image      = var.image
  vpc_id     = var.networks[local.hub_region].vpc_id
  subnet_ids = var.networks[local.hub_region].private_subnet_ids
  scaling = {
    min                = 1
    max                = 4
    cpu_target_percent = 60
  }
  environment = merge(var.notifier.environment, local.production_environment, local.redis_environment, {
    TESSERA_JETSTREAM_REPLICAS = tostring(module.nats.replicas)
  })
  # The notifier user consumes ORDERS and publishes dead letters, nothing else.
  secret_arns = {
    TESSERA_NATS_URL  = module.nats.client_url_secret_arns[local.hub_region]["notifier"]
    TESSERA_REDIS_URL = module.redis.url_secret_arns[local.hub_region]
  }
  secret_names  = var.notifier.secret_names
  load_balancer = null
  tags          = local.tags
}

# --- the fans' front door, and the alarms and dashboards ---

module "cdn" {
  source = "../../modules/edge_cdn"

  name            = local.name
  zone            = var.dns_zone
  hostname        = var.public_hostname
  origin_hostname = local.origin_hostname
  origins = {
    for r in var.regions : r => {
      dns_name = module.edge[r].load_balancer.dns_name
      zone_id  = module.edge[r].load_balancer.zone_id
    }
  }
  origin_shield_region = local.hub_region
  # What the origin secret's rotation updates in each region.
  origin_guards = {
    for r in var.regions : r => {
      listener_rule_arn = module.edge[r].origin_listener_rule_arn
      cluster_name      = module.edge[r].cluster_name
      service_name      = module.edge[r].service_name
    }
  }
  origin_secret_rotation_schedule = var.origin_secret_rotation_schedule
  tags                            = local.tags
}

module "observability" {
  source = "../../modules/observability"

  name_prefix = local.name
  hub_region  = local.hub_region
  regions     = var.regions
  load_balancers = merge(
    { "writer/${local.hub_region}" = { region = local.hub_region, tier = "writer", arn_suffix = module.writer.load_balancer.arn_suffix } },
    { for r in var.regions : "regional/${r}" => { region = r, tier = "regional", arn_suffix = module.regional[r].load_balancer.arn_suffix } },
    { for r in var.regions : "edge/${r}" => { region = r, tier = "edge", arn_suffix = module.edge[r].load_balancer.arn_suffix } },
  )
  services = merge(
    { "writer/${local.hub_region}" = { region = local.hub_region, cluster_name = module.writer.cluster_name, service_name = module.writer.service_name } },
    { for r in var.regions : "regional/${r}" => { region = r, cluster_name = module.regional[r].cluster_name, service_name = module.regional[r].service_name } },
    { for r in var.regions : "edge/${r}" => { region = r, cluster_name = module.edge[r].cluster_name, service_name = module.edge[r].service_name } },
    var.notifier.enabled ? { "notifier/${local.hub_region}" = { region = local.hub_region, cluster_name = module.notifier[0].cluster_name, service_name = module.notifier[0].service_name } } : {},
  )
  nats_load_balancers        = module.nats.load_balancers
  redis_nodes                = module.redis.writable_nodes
  rotation_function          = module.cdn.origin_secret_rotation_function
  cloudfront_distribution_id = module.cdn.distribution_id
  notification_emails        = var.alarm_emails
  thresholds                 = var.alarm_thresholds
  tags                       = local.tags
}
