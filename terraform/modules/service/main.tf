# One Tessera tier in one region on ECS Fargate: `python -m <tier> --host 0.0.0.0 --port P`
# behind an HTTPS load balancer (health checks on /readyz), scaling on CPU and on requests per
# task with raised floors scheduled ahead of announced onsales, secrets from Secrets Manager, logs
# and metrics to CloudWatch (an ADOT sidecar scrapes /metrics: the observability module's alarms
# and dashboard read those metrics). Optionally a second, internal load balancer in front of the
# tier's internal port (the edge's /metrics and admin API), which the public one never routes to.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_secretsmanager_secret" "named" {
  for_each = var.secret_names

  region = var.region
  name   = each.value
}

locals {
  secrets = merge(var.secret_arns, { for env, secret in data.aws_secretsmanager_secret.named : env => secret.arn })
  module_name = {
    writer   = "global_writer"
    regional = "regional"
    edge     = "edge"
    notifier = "notifier"
  }[var.tier]
  command     = ["python", "-m", local.module_name, "--host", "0.0.0.0", "--port", tostring(var.port)]
  environment = merge(var.environment, { TESSERA_REGION = var.region })
  has_lb      = var.load_balancer != null
  has_init    = length(var.init_command) > 0
  has_int     = var.internal_listener != null
  tags        = merge(var.tags, { "tessera:tier" = var.tier, "tessera:region" = var.region })
  # Decided on the header's name, never on the (sensitive) values: count must be known and clean.
  guarded      = local.has_lb && try(var.load_balancer.origin_header_name, null) != null
  blocks_paths = local.has_lb && length(try(var.load_balancer.blocked_paths, [])) > 0
  # Metrics live on the internal port when there is one: the public port never serves them.
  metrics_port = local.has_int ? var.internal_listener.port : var.port
  ports        = local.has_int ? [var.port, var.internal_listener.port] : [var.port]

  # The container's own readiness probe; the image has Python, not curl.
  health_command = [
    "CMD", "python", "-c",
    "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${var.port}${var.health_check_path}', timeout=2)",
  ]

  # ADOT collector: scrape /metrics every 15 s, label every series with tier and region, mark
  # hold requests (POST .../holds) with operation="hold", ship to CloudWatch as EMF. Counters keep
  # Prometheus's `_total` suffix (the collector does not normalise names) and arrive as deltas.
  # The dimension sets are the closed-set labels the alarms and the dashboard split by.
  adot_config = yamlencode({
    receivers = {
      prometheus = {
        config = {
          scrape_configs = [{
            job_name        = var.tier
            scrape_interval = "15s"
            metrics_path    = "/metrics"
            static_configs  = [{ targets = ["127.0.0.1:${local.metrics_port}"], labels = { tier = var.tier, region = var.region } }]
            metric_relabel_configs = [{
              source_labels = ["route", "method"]
              regex         = ".*/holds;POST"
              target_label  = "operation"
              replacement   = "hold"
            }]
          }]
        }
      }
    }
    exporters = {
      awsemf = {
        namespace               = var.metrics_namespace
        region                  = var.region
        log_group_name          = "/${var.name}/metrics"
        dimension_rollup_option = "NoDimensionRollup"
        metric_declarations = [{
          dimensions = [
            ["tier", "region"], ["tier", "region", "operation"], ["tier", "region", "reason"],
            ["tier", "region", "outcome"], ["tier", "region", "result"], ["tier", "region", "channel"],
          ]
          metric_name_selectors = ["^tessera_.*"]
        }]
      }
    }
    service = {
      pipelines = {
        metrics = { receivers = ["prometheus"], exporters = ["awsemf"] }
      }
    }
  })

  app_container = {
    name                   = var.tier
    image                  = var.image
    essential              = true
    command                = local.command
    workingDirectory       = "/app"
    portMappings           = [for p in local.ports : { containerPort = p, protocol = "tcp" }]
    environment            = [for k, v in local.environment : { name = k, value = v }]
    secrets                = [for k, arn in local.secrets : { name = k, valueFrom = arn }]
    readonlyRootFilesystem = true
    mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
    healthCheck = {
      command     = local.health_command
      interval    = 10
      timeout     = 3
      retries     = 3
      startPeriod = 60
    }
    dependsOn = local.has_init ? [{ containerName = "init", condition = "SUCCESS" }] : []
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.service.name
        awslogs-region        = var.region
        awslogs-stream-prefix = var.tier
      }
    }
  }

  init_container = {
    name                   = "init"
    image                  = var.image
    essential              = false
    command                = var.init_command
    workingDirectory       = "/app"
    environment            = [for k, v in local.environment : { name = k, value = v }]
    secrets                = [for k, arn in var.init_secret_arns : { name = k, valueFrom = arn }]
    readonlyRootFilesystem = true
    mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.service.name
        awslogs-region        = var.region
        awslogs-stream-prefix = "init"
      }
    }
  }

  metrics_container = {
    name                   = "metrics"
    image                  = var.adot_image
    essential              = false
    environment            = [{ name = "AOT_CONFIG_CONTENT", value = local.adot_config }]
    readonlyRootFilesystem = true
    mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.service.name
        awslogs-region        = var.region
        awslogs-stream-prefix = "metrics"
      }
    }
  }

  containers  = concat(local.has_init ? [local.init_container] : [], [local.app_container, local.metrics_container])
  secret_arns = distinct(concat(values(local.secrets), values(var.init_secret_arns)))
}

# --- keys and logs ---

resource "aws_kms_key" "service" {
  region                  = var.region
  description             = "${var.name}: logs"
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
        Principal = { Service = "logs.${var.region}.amazonaws.com" }
        Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
      },
    ]
  })
  tags = local.tags
}

resource "aws_cloudwatch_log_group" "service" {
  region            = var.region
  name              = "/${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.service.arn
  tags              = local.tags
}

resource "aws_cloudwatch_log_group" "metrics" {
  region            = var.region
  name              = "/${var.name}/metrics"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.service.arn
  tags              = local.tags
}

# --- IAM ---

resource "aws_iam_role" "execution" {
  name = "${var.name}-execution"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ecs-tasks.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = local.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

# Only the secrets this service is given: a leaked task role cannot read another tier's.
resource "aws_iam_role_policy" "secrets" {
  # Counted on the maps' keys, known at plan time (the ARNs may not be yet).
  count = length(var.secret_arns) + length(var.secret_names) + length(var.init_secret_arns) > 0 ? 1 : 0

  name = "read-own-secrets"
  role = aws_iam_role.execution.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = local.secret_arns
      },
      {
        Effect    = "Allow"
        Action    = ["kms:Decrypt"]
        Resource  = "*"
        Condition = { StringEquals = { "kms:ViaService" = "secretsmanager.${var.region}.amazonaws.com" } }
      },
    ]
  })
}

resource "aws_iam_role" "task" {
  name = "${var.name}-task"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ecs-tasks.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = local.tags
}

# The metrics sidecar writes EMF records to its log group; nothing else.
resource "aws_iam_role_policy" "metrics" {
  name = "ship-metrics"
  role = aws_iam_role.task.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
      Resource = ["${aws_cloudwatch_log_group.metrics.arn}:*"]
    }]
  })
}

# --- network ---

resource "aws_security_group" "tasks" {
  region      = var.region
  name        = "${var.name}-tasks"
  description = "Tasks of ${var.name}"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_lb" {
  count = local.has_lb ? 1 : 0

  region                       = var.region
  security_group_id            = aws_security_group.tasks.id
  description                  = "The service's load balancer"
  ip_protocol                  = "tcp"
  from_port                    = var.port
  to_port                      = var.port
  referenced_security_group_id = aws_security_group.lb[0].id
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_internal_lb" {
  count = local.has_int ? 1 : 0

  region                       = var.region
  security_group_id            = aws_security_group.tasks.id
  description                  = "The internal load balancer (metrics, admin API)"
  ip_protocol                  = "tcp"
  from_port                    = var.internal_listener.port
  to_port                      = var.internal_listener.port
  referenced_security_group_id = aws_security_group.internal_lb[0].id
}

# Tasks of one service calling each other: a writer forwards a write to the writer holding the
# event's lease, at the address that writer advertised (TESSERA_WRITER_ADVERTISE_URL), not through
# the load balancer, which could hand it back to any writer.
resource "aws_vpc_security_group_ingress_rule" "tasks_from_peers" {
  count = var.peer_ingress ? 1 : 0

  region                       = var.region
  security_group_id            = aws_security_group.tasks.id
  description                  = "Other tasks of this service (writers forwarding to the lease holder)"
  ip_protocol                  = "tcp"
  from_port                    = var.port
  to_port                      = var.port
  referenced_security_group_id = aws_security_group.tasks.id
}

# A Prometheus server in the VPC scrapes each task directly (one series per task, not per LB pick).
resource "aws_vpc_security_group_ingress_rule" "tasks_internal_port" {
  for_each = local.has_int ? toset(var.internal_listener.ingress_cidrs) : toset([])

  region            = var.region
  security_group_id = aws_security_group.tasks.id
  description       = "The internal port from inside the VPC (the Prometheus scraper)"
  ip_protocol       = "tcp"
  from_port         = var.internal_listener.port
  to_port           = var.internal_listener.port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "tasks" {
  region            = var.region
  security_group_id = aws_security_group.tasks.id
  description       = "Database, Redis, NATS, the writer and the regional nodes (other regions included), AWS APIs"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_security_group" "lb" {
  count = local.has_lb ? 1 : 0

  region      = var.region
  name        = "${var.name}-lb"
  description = "Load balancer of ${var.name}"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "lb_cidr" {
  for_each = local.has_lb ? toset(var.load_balancer.ingress_cidrs) : toset([])

  region            = var.region
  security_group_id = aws_security_group.lb[0].id
  description       = "HTTPS from an allowed network"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "lb_prefix_list" {
  for_each = local.has_lb ? toset(var.load_balancer.ingress_prefix_list_ids) : toset([])

  region            = var.region
  security_group_id = aws_security_group.lb[0].id
  description       = "HTTPS from a managed prefix list (e.g. CloudFront's origin-facing addresses)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = each.value
}

resource "aws_vpc_security_group_egress_rule" "lb" {
  count = local.has_lb ? 1 : 0

  region                       = var.region
  security_group_id            = aws_security_group.lb[0].id
  description                  = "The tasks"
  ip_protocol                  = "tcp"
  from_port                    = var.port
  to_port                      = var.port
  referenced_security_group_id = aws_security_group.tasks.id
}

# --- load balancer, certificate, DNS ---

resource "aws_lb" "service" {
  count = local.has_lb ? 1 : 0

  region                     = var.region
  name                       = substr(var.name, 0, 32)
  internal                   = var.load_balancer.internal
  load_balancer_type         = "application"
  subnets                    = var.load_balancer.subnet_ids
  security_groups            = [aws_security_group.lb[0].id]
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
  # SSE streams stay open; the edge closes a silent one after 45 s (3 heartbeats).
  idle_timeout = 120
  tags         = local.tags
}

resource "aws_lb_target_group" "service" {
  count = local.has_lb ? 1 : 0

  region               = var.region
  name                 = substr(var.name, 0, 32)
  port                 = var.port
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 30

  health_check {
    path                = var.health_check_path
    matcher             = "200"
    interval            = 10
    timeout             = 3
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = local.tags
}

resource "aws_acm_certificate" "service" {
  count = local.has_lb ? 1 : 0

  region                    = var.region
  domain_name               = var.load_balancer.hostname
  subject_alternative_names = var.load_balancer.extra_certificate_names
  validation_method         = "DNS"
  tags                      = local.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_route53_record" "validation" {
  for_each = local.has_lb ? {
    for option in aws_acm_certificate.service[0].domain_validation_options : option.domain_name => option
  } : {}

  zone_id = var.load_balancer.zone_id
  name    = each.value.resource_record_name
  type    = each.value.resource_record_type
  records = [each.value.resource_record_value]
  ttl     = 300
  # The same name in several regions has the same validation record.
  allow_overwrite = true
}

resource "aws_acm_certificate_validation" "service" {
  count = local.has_lb ? 1 : 0

  region                  = var.region
  certificate_arn         = aws_acm_certificate.service[0].arn
  validation_record_fqdns = [for record in aws_route53_record.validation : record.fqdn]
}

# A guarded listener forwards nothing by default: only the origin rule below forwards, so a
# request without the CDN's secret header (someone else's CloudFront distribution, a scanner that
# found the load balancer's name) gets 403 from the load balancer and never reaches a task.
resource "aws_lb_listener" "https" {
  count = local.has_lb ? 1 : 0

  region            = var.region
  load_balancer_arn = aws_lb.service[0].arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = aws_acm_certificate_validation.service[0].certificate_arn

  default_action {
    type             = local.guarded ? "fixed-response" : "forward"
    target_group_arn = local.guarded ? null : aws_lb_target_group.service[0].arn

    dynamic "fixed_response" {
      for_each = local.guarded ? [1] : []
      content {
        content_type = "text/plain"
        message_body = "forbidden"
        status_code  = "403"
      }
    }
  }
}

# Evaluated before the origin rule: these paths are answered here even with the right header.
resource "aws_lb_listener_rule" "blocked_paths" {
  count = local.blocks_paths ? 1 : 0

  region       = var.region
  listener_arn = aws_lb_listener.https[0].arn
  priority     = 10

  action {
    type = "fixed-response"
    fixed_response {
      content_type = "text/plain"
      message_body = "not found"
      status_code  = "404"
    }
  }

  condition {
    path_pattern {
      values = var.load_balancer.blocked_paths
    }
  }

  tags = local.tags
}

# The origin secret's rotation Lambda rewrites these values in place (edge_cdn module); the next
# plan reads the same secret, so Terraform and the Lambda agree and the plan shows no change.
resource "aws_lb_listener_rule" "origin" {
  count = local.guarded ? 1 : 0

  region       = var.region
  listener_arn = aws_lb_listener.https[0].arn
  priority     = 20

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.service[0].arn
  }

  condition {
    http_header {
      http_header_name = var.load_balancer.origin_header_name
      values           = var.origin_secret_values
    }
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = length(var.origin_secret_values) > 0
      error_message = "load_balancer.origin_header_name is set but origin_secret_values is empty: every request would get 403."
    }
  }
}

resource "aws_route53_record" "service" {
  count = local.has_lb ? 1 : 0

  zone_id = var.load_balancer.zone_id
  name    = var.load_balancer.hostname
  type    = "A"

  alias {
    name                   = aws_lb.service[0].dns_name
    zone_id                = aws_lb.service[0].zone_id
    evaluate_target_health = true
  }
}

# --- the internal listener: metrics and admin routes, from inside the VPC only ---

resource "aws_security_group" "internal_lb" {
  count = local.has_int ? 1 : 0

  region      = var.region
  name        = "${var.name}-internal-lb"
  description = "Internal load balancer of ${var.name} (metrics, admin API)"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "internal_lb" {
  for_each = local.has_int ? toset(var.internal_listener.ingress_cidrs) : toset([])

  region            = var.region
  security_group_id = aws_security_group.internal_lb[0].id
  description       = "HTTPS from inside the VPC (operators, the Prometheus scraper)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "internal_lb" {
  count = local.has_int ? 1 : 0

  region                       = var.region
  security_group_id            = aws_security_group.internal_lb[0].id
  description                  = "The tasks' internal port"
  ip_protocol                  = "tcp"
  from_port                    = var.internal_listener.port
  to_port                      = var.internal_listener.port
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_lb" "internal" {
  count = local.has_int ? 1 : 0

  region                     = var.region
  name                       = "${substr(var.name, 0, 28)}-int"
  internal                   = true
  load_balancer_type         = "application"
  subnets                    = var.internal_listener.subnet_ids
  security_groups            = [aws_security_group.internal_lb[0].id]
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
  tags                       = local.tags
}

resource "aws_lb_target_group" "internal" {
  count = local.has_int ? 1 : 0

  region               = var.region
  name                 = "${substr(var.name, 0, 28)}-int"
  port                 = var.internal_listener.port
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 30

  health_check {
    path                = var.internal_listener.health_check_path
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = local.tags
}

resource "aws_acm_certificate" "internal" {
  count = local.has_int ? 1 : 0

  region            = var.region
  domain_name       = var.internal_listener.hostname
  validation_method = "DNS"
  tags              = local.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_route53_record" "internal_validation" {
  for_each = local.has_int ? {
    for option in aws_acm_certificate.internal[0].domain_validation_options : option.domain_name => option
  } : {}

  zone_id         = var.internal_listener.zone_id
  name            = each.value.resource_record_name
  type            = each.value.resource_record_type
  records         = [each.value.resource_record_value]
  ttl             = 300
  allow_overwrite = true
}

resource "aws_acm_certificate_validation" "internal" {
  count = local.has_int ? 1 : 0

  region                  = var.region
  certificate_arn         = aws_acm_certificate.internal[0].arn
  validation_record_fqdns = [for record in aws_route53_record.internal_validation : record.fqdn]
}

resource "aws_lb_listener" "internal" {
  count = local.has_int ? 1 : 0

  region            = var.region
  load_balancer_arn = aws_lb.internal[0].arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = aws_acm_certificate_validation.internal[0].certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.internal[0].arn
  }
}

resource "aws_route53_record" "internal" {
  count = local.has_int ? 1 : 0

  zone_id = var.internal_listener.zone_id
  name    = var.internal_listener.hostname
  type    = "A"

  alias {
    name                   = aws_lb.internal[0].dns_name
    zone_id                = aws_lb.internal[0].zone_id
    evaluate_target_health = true
  }
}

# --- ECS ---

resource "aws_ecs_cluster" "service" {
  region = var.region
  name   = var.name

  setting {
    name  = "containerInsights"
    value = "enhanced"
  }

  tags = local.tags
}

resource "aws_ecs_task_definition" "service" {
  region                   = var.region
  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  container_definitions    = jsonencode(local.containers)

  # Scratch space: the root filesystems are read-only.
  volume {
    name = "tmp"
  }

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  tags = local.tags
}

resource "aws_ecs_service" "service" {
  region                             = var.region
  name                               = var.name
  cluster                            = aws_ecs_cluster.service.id
  task_definition                    = aws_ecs_task_definition.service.arn
  desired_count                      = var.scaling.min
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  propagate_tags                     = "SERVICE"
  enable_execute_command             = false
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = local.has_lb ? 60 : null

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  dynamic "load_balancer" {
    for_each = local.has_lb ? [1] : []
    content {
      target_group_arn = aws_lb_target_group.service[0].arn
      container_name   = var.tier
      container_port   = var.port
    }
  }

  dynamic "load_balancer" {
    for_each = local.has_int ? [1] : []
    content {
      target_group_arn = aws_lb_target_group.internal[0].arn
      container_name   = var.tier
      container_port   = var.internal_listener.port
    }
  }

  lifecycle {
    # Autoscaling owns the task count between scaling.min and scaling.max.
    ignore_changes = [desired_count]
  }

  depends_on = [aws_lb_listener.https, aws_lb_listener.internal]
  tags       = local.tags
}

# --- autoscaling: CPU, and requests per task ---

resource "aws_appautoscaling_target" "service" {
  region             = var.region
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.service.name}/${aws_ecs_service.service.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  # Inside a scheduled window the floor is the window's: an apply during an onsale must not
  # undo what the scheduled action raised.
  min_capacity = local.floor_now
  max_capacity = max(var.scaling.max, local.floor_now)
}

# --- scheduled floors ahead of announced onsales ---

locals {
  windows = { for w in var.scheduled_minimums : w.name => w }
  floor_now = max(concat([var.scaling.min], [
    for w in var.scheduled_minimums : w.min
    if timecmp(plantimestamp(), w.from) >= 0 && timecmp(plantimestamp(), w.until) < 0
  ])...)
}

resource "aws_appautoscaling_scheduled_action" "raise" {
  for_each = local.windows

  region             = var.region
  name               = "${var.name}-${each.key}-raise"
  service_namespace  = aws_appautoscaling_target.service.service_namespace
  resource_id        = aws_appautoscaling_target.service.resource_id
  scalable_dimension = aws_appautoscaling_target.service.scalable_dimension
  schedule           = "at(${formatdate("YYYY-MM-DD'T'hh:mm:ss", each.value.from)})"
  timezone           = "Etc/UTC"

  scalable_target_action {
    min_capacity = each.value.min
    max_capacity = max(var.scaling.max, each.value.min)
  }
}

resource "aws_appautoscaling_scheduled_action" "restore" {
  for_each = local.windows

  region             = var.region
  name               = "${var.name}-${each.key}-restore"
  service_namespace  = aws_appautoscaling_target.service.service_namespace
  resource_id        = aws_appautoscaling_target.service.resource_id
  scalable_dimension = aws_appautoscaling_target.service.scalable_dimension
  schedule           = "at(${formatdate("YYYY-MM-DD'T'hh:mm:ss", each.value.until)})"
  timezone           = "Etc/UTC"

  scalable_target_action {
    min_capacity = var.scaling.min
    max_capacity = var.scaling.max
  }

  # Application Auto Scaling refuses concurrent changes to one scalable target: one at a time.
  depends_on = [aws_appautoscaling_scheduled_action.raise]
}

resource "aws_appautoscaling_policy" "cpu" {
  region             = var.region
  name               = "${var.name}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.service.service_namespace
  resource_id        = aws_appautoscaling_target.service.resource_id
  scalable_dimension = aws_appautoscaling_target.service.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.scaling.cpu_target_percent
    scale_in_cooldown  = var.scaling.scale_in_cooldown_s
    scale_out_cooldown = var.scaling.scale_out_cooldown_s

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

resource "aws_appautoscaling_policy" "requests" {
  count = local.has_lb && var.scaling.requests_per_target != null ? 1 : 0

  region             = var.region
  name               = "${var.name}-requests"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.service.service_namespace
  resource_id        = aws_appautoscaling_target.service.resource_id
  scalable_dimension = aws_appautoscaling_target.service.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.scaling.requests_per_target
    scale_in_cooldown  = var.scaling.scale_in_cooldown_s
    scale_out_cooldown = var.scaling.scale_out_cooldown_s

    predefined_metric_specification {
      predefined_metric_type = "ALBRequestCountPerTarget"
      resource_label         = "${aws_lb.service[0].arn_suffix}/${aws_lb_target_group.service[0].arn_suffix}"
    }
  }
}
