# The origin secret: only our CloudFront distribution may reach the edges.
#
# CloudFront's origin-facing address list is shared by every CloudFront customer, so the edge
# load balancers' security groups alone would let anyone point their own distribution at them
# and skip our WAF. CloudFront therefore adds `origin_header_name` (X-Origin-Secret) with a value
# from this secret; each edge load balancer forwards only requests that carry it (403 otherwise,
# service module) and each edge checks it again (TESSERA_EDGE_ORIGIN_SECRETS).
#
# The secret is JSON {"previous", "current", "next"}: CloudFront sends `current`, the edges and
# load balancers accept all three, and the rotation Lambda (rotation/origin_secret.py) shifts
# them one place each rotation, so edges started before and after a rotation both accept what
# CloudFront sends while its change propagates; then it redeploys the edges. Terraform writes
# only the first value and reads the current one on every plan (CloudFront's header, the
# listener rules), so an apply after a rotation changes nothing.

locals {
  origin_regions   = keys(var.origins)
  secret_regions   = distinct(concat([local.global_region], local.origin_regions))
  replica_regions  = [for r in local.origin_regions : r if r != local.global_region]
  rotation_name    = "${var.name}-origin-secret-rotation"
  origin_secret    = jsondecode(data.aws_secretsmanager_secret_version.origin.secret_string)
  origin_accepted  = [for key in ["previous", "current", "next"] : local.origin_secret[key]]
  origin_rules     = [for region, guard in var.origin_guards : { region = region, arn = guard.listener_rule_arn } if guard.listener_rule_arn != null]
  origin_services  = [for region, guard in var.origin_guards : { region = region, cluster = guard.cluster_name, service = guard.service_name }]
  origin_secret_id = "${var.name}/cdn/origin-secret"
}

resource "aws_kms_key" "origin_secret" {
  for_each = toset(local.secret_regions)

  region                  = each.key
  description             = "${var.name}: CDN origin secret (${each.key})"
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
  tags = local.tags
}

resource "aws_secretsmanager_secret" "origin" {
  region                  = local.global_region
  name                    = local.origin_secret_id
  description             = "The value CloudFront sends as ${var.origin_header_name} (JSON previous/current/next; the edges accept all three). Rotated by ${local.rotation_name}."
  kms_key_id              = aws_kms_key.origin_secret[local.global_region].arn
  recovery_window_in_days = 7

  # Each region's edges read their own region's copy at task start.
  dynamic "replica" {
    for_each = toset(local.replica_regions)
    content {
      region     = replica.value
      kms_key_id = aws_kms_key.origin_secret[replica.value].arn
    }
  }

  tags = local.tags
}

resource "random_password" "origin" {
  for_each = toset(["previous", "current", "next"])

  length  = 64
  upper   = false # the load balancer compares header values case-insensitively
  special = false # and treats * and ? as wildcards
}

# The first value only: the rotation Lambda writes every later version. Secrets Manager keeps a
# superseded version (without staging labels) until a secret has 100 versions, so this resource
# keeps finding its own and never writes the stale seed again.
resource "aws_secretsmanager_secret_version" "origin_seed" {
  region        = local.global_region
  secret_id     = aws_secretsmanager_secret.origin.id
  secret_string = jsonencode({ for key, value in random_password.origin : key => value.result })

  lifecycle {
    ignore_changes = [secret_string, version_stages]
  }
}

# The current value, read on every plan.
data "aws_secretsmanager_secret_version" "origin" {
  region        = local.global_region
  secret_id     = aws_secretsmanager_secret_version.origin_seed.secret_id
  version_stage = "AWSCURRENT"
}

# --- the rotation Lambda ---

data "archive_file" "rotation" {
  type        = "zip"
  source_file = "${path.module}/rotation/origin_secret.py"
  output_path = "${path.root}/.terraform/tmp/${local.rotation_name}.zip"
}

resource "aws_cloudwatch_log_group" "rotation" {
  region            = local.global_region
  name              = "/aws/lambda/${local.rotation_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.waf_logs.arn
  tags              = local.tags
}

resource "aws_iam_role" "rotation" {
  name = local.rotation_name
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "lambda.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = local.tags
}

# Exactly what the four steps touch: this secret (and its replicas), the distribution, the edge
# load balancers' origin rules and the edge services.
resource "aws_iam_role_policy" "rotation" {
  name = "rotate-origin-secret"
  role = aws_iam_role.rotation.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [
        {
          Sid      = "TheSecret"
          Effect   = "Allow"
          Action   = ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage"]
          Resource = [aws_secretsmanager_secret.origin.arn]
        },
        {
          Sid      = "ItsKeys"
          Effect   = "Allow"
          Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
          Resource = [for k in aws_kms_key.origin_secret : k.arn]
        },
        {
          Sid      = "TheDistribution"
          Effect   = "Allow"
          Action   = ["cloudfront:GetDistributionConfig", "cloudfront:UpdateDistribution"]
          Resource = [aws_cloudfront_distribution.edge.arn]
        },
        {
          Sid      = "Logs"
          Effect   = "Allow"
          Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
          Resource = ["${aws_cloudwatch_log_group.rotation.arn}:*"]
        },
        {
          Sid      = "Traces"
          Effect   = "Allow"
          Action   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
          Resource = ["*"]
        },
        {
          # DescribeRules has no resource-level permissions.
          Sid      = "ReadRules"
          Effect   = "Allow"
          Action   = ["elasticloadbalancing:DescribeRules"]
          Resource = ["*"]
        },
      ],
      # A statement may not have an empty Resource: each of these only when there is something.
      length(local.replica_regions) == 0 ? [] : [{
        Sid      = "ItsReplicas"
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = [for r in local.replica_regions : replace(aws_secretsmanager_secret.origin.arn, ":${local.global_region}:", ":${r}:")]
      }],
      length(local.origin_rules) == 0 ? [] : [{
        Sid      = "TheOriginRules"
        Effect   = "Allow"
        Action   = ["elasticloadbalancing:ModifyRule"]
        Resource = [for rule in local.origin_rules : rule.arn]
      }],
      length(local.origin_services) == 0 ? [] : [{
        Sid    = "RedeployTheEdges"
        Effect = "Allow"
        Action = ["ecs:UpdateService"]
        Resource = [
          for s in local.origin_services :
          "arn:${data.aws_partition.current.partition}:ecs:${s.region}:${data.aws_caller_identity.current.account_id}:service/${s.cluster}/${s.service}"
        ]
      }],
    )
  })
}

resource "aws_lambda_function" "rotation" {
  region           = local.global_region
  function_name    = local.rotation_name
  description      = "Rotates ${local.origin_secret_id}: the CloudFront origin header and the edges' accepted values."
  role             = aws_iam_role.rotation.arn
  runtime          = "python3.13"
  handler          = "origin_secret.handler"
  filename         = data.archive_file.rotation.output_path
  source_code_hash = data.archive_file.rotation.output_base64sha256
  timeout          = 300
  memory_size      = 256
  # One rotation at a time: two would race on the distribution's ETag and the stages.
  reserved_concurrent_executions = 1
  kms_key_arn                    = aws_kms_key.origin_secret[local.global_region].arn

  environment {
    variables = {
      HEADER_NAME     = var.origin_header_name
      DISTRIBUTION_ID = aws_cloudfront_distribution.edge.id
      ORIGIN_RULES    = jsonencode(local.origin_rules)
      EDGE_SERVICES   = jsonencode(local.origin_services)
      REPLICA_REGIONS = jsonencode(local.replica_regions)
    }
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.rotation.name
  }

  tags       = local.tags
  depends_on = [aws_iam_role_policy.rotation]
}

resource "aws_lambda_permission" "rotation" {
  region         = local.global_region
  statement_id   = "SecretsManagerRotates"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.rotation.function_name
  principal      = "secretsmanager.amazonaws.com"
  source_arn     = aws_secretsmanager_secret.origin.arn
  source_account = data.aws_caller_identity.current.account_id
}

resource "aws_secretsmanager_secret_rotation" "origin" {
  region              = local.global_region
  secret_id           = aws_secretsmanager_secret.origin.id
  rotation_lambda_arn = aws_lambda_function.rotation.arn
  # The seed is fresh: the first rotation waits for the schedule.
  rotate_immediately = false

  rotation_rules {
    schedule_expression = var.origin_secret_rotation_schedule
    duration            = var.origin_secret_rotation_window
  }

  depends_on = [aws_lambda_permission.rotation]
}
