# CloudFront in front of the regions' edge tiers.
#
# - Origin: origin_hostname, one Route 53 latency record per region pointing at that region's edge
#   load balancer (health-evaluated), so each CloudFront location reaches the nearest healthy
#   region and a failed region drops out of DNS.
# - Caching honours the origin's Cache-Control (seat maps: public, max-age=1,
#   stale-while-revalidate=5, strong ETag): the cache policy has no TTL of its own below
#   cache_max_ttl_s, and Accept-Encoding is part of the key (the origin pre-compresses per encoding).
#   Everything else (writes, SSE streams, waiting room, anything authenticated) is not cached.
# - Origin Shield (optional) collapses the locations' seat-map misses into one request stream.
# - AWS WAF: IP reputation, common and known-bad-input rules, Bot Control, and rate-based rules
#   per client IP (all requests, and the write paths).
# - A secret origin header (origin_secret.tf) so that only this distribution, behind this WAF,
#   reaches the edges.

locals {
  # CloudFront requires its certificate and web ACL in us-east-1.
  global_region   = "us-east-1"
  tags            = merge(var.tags, { "tessera:component" = "cdn" })
  origin_nearest  = "nearest"
  origin_shielded = "shielded"
}

data "aws_cloudfront_cache_policy" "disabled" {
  name = "Managed-CachingDisabled"
}

data "aws_cloudfront_origin_request_policy" "all_viewer_except_host" {
  name = "Managed-AllViewerExceptHostHeader"
}

data "aws_ec2_managed_prefix_list" "origin_facing" {
  for_each = var.origins

  region = each.key
  name   = "com.amazonaws.global.cloudfront.origin-facing"
}

# --- DNS: the latency-routed origin, and the fans' name ---

resource "aws_route53_record" "origin" {
  for_each = var.origins

  zone_id        = var.zone.id
  name           = var.origin_hostname
  type           = "A"
  set_identifier = each.key

  latency_routing_policy {
    region = each.key
  }

  alias {
    name                   = each.value.dns_name
    zone_id                = each.value.zone_id
    evaluate_target_health = true
  }
}

resource "aws_acm_certificate" "viewer" {
  region            = local.global_region
  domain_name       = var.hostname
  validation_method = "DNS"
  tags              = local.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_route53_record" "viewer_validation" {
  for_each = { for option in aws_acm_certificate.viewer.domain_validation_options : option.domain_name => option }

  zone_id         = var.zone.id
  name            = each.value.resource_record_name
  type            = each.value.resource_record_type
  records         = [each.value.resource_record_value]
  ttl             = 300
  allow_overwrite = true
}

resource "aws_acm_certificate_validation" "viewer" {
  region                  = local.global_region
  certificate_arn         = aws_acm_certificate.viewer.arn
  validation_record_fqdns = [for record in aws_route53_record.viewer_validation : record.fqdn]
}

resource "aws_route53_record" "viewer" {
  for_each = toset(["A", "AAAA"])

  zone_id = var.zone.id
  name    = var.hostname
  type    = each.value

  alias {
    name                   = aws_cloudfront_distribution.edge.domain_name
    zone_id                = aws_cloudfront_distribution.edge.hosted_zone_id
    evaluate_target_health = false
  }
}

# --- policies ---

resource "aws_cloudfront_cache_policy" "honour_origin" {
  name        = "${var.name}-honour-origin"
  comment     = "TTL from the origin's Cache-Control; key: path, query, Accept-Encoding"
  min_ttl     = 0
  default_ttl = 0
  max_ttl     = var.cache_max_ttl_s

  parameters_in_cache_key_and_forwarded_to_origin {
    enable_accept_encoding_brotli = true
    enable_accept_encoding_gzip   = true

    cookies_config {
      cookie_behavior = "none"
    }
    headers_config {
      header_behavior = "none"
    }
    query_strings_config {
      query_string_behavior = "all"
    }
  }
}

resource "aws_cloudfront_response_headers_policy" "security" {
  name    = "${var.name}-security-headers"
  comment = "HSTS and the usual browser hardening on every response"

  security_headers_config {
    strict_transport_security {
      access_control_max_age_sec = 31536000
      include_subdomains         = true
      preload                    = true
      override                   = true
    }
    content_type_options {
      override = true
    }
    frame_options {
      frame_option = "DENY"
      override     = true
    }
    referrer_policy {
      referrer_policy = "strict-origin-when-cross-origin"
      override        = true
    }
    xss_protection {
      protection = true
      mode_block = true
      override   = true
    }
  }
}

# --- the distribution ---

resource "aws_cloudfront_distribution" "edge" {
  enabled         = true
  comment         = "${var.name}: fans to the nearest region's edge"
  aliases         = [var.hostname]
  price_class     = var.price_class
  http_version    = "http2and3"
  is_ipv6_enabled = true
  web_acl_id      = aws_wafv2_web_acl.edge.arn
  tags            = local.tags

  origin {
    origin_id   = local.origin_nearest
    domain_name = var.origin_hostname

    custom_origin_config {
      http_port                = 80
      https_port               = 443
      origin_protocol_policy   = "https-only"
      origin_ssl_protocols     = ["TLSv1.2"]
      origin_read_timeout      = 60
      origin_keepalive_timeout = 60
    }

    # Only our distribution knows it: the edge load balancers answer 403 without it.
    custom_header {
      name  = var.origin_header_name
      value = local.origin_secret.current
    }
  }

  origin {
    origin_id   = local.origin_shielded
    domain_name = var.origin_hostname

    custom_origin_config {
      http_port                = 80
      https_port               = 443
      origin_protocol_policy   = "https-only"
      origin_ssl_protocols     = ["TLSv1.2"]
      origin_read_timeout      = 30
      origin_keepalive_timeout = 60
    }

    # Only our distribution knows it: the edge load balancers answer 403 without it.
    custom_header {
      name  = var.origin_header_name
      value = local.origin_secret.current
    }

    dynamic "origin_shield" {
      for_each = var.origin_shield_region == null ? [] : [var.origin_shield_region]
      content {
        enabled              = true
        origin_shield_region = origin_shield.value
      }
    }
  }

  # SSE deltas: streamed, never cached, from the nearest region.
  ordered_cache_behavior {
    path_pattern               = "/v1/events/*/seatmap/stream"
    target_origin_id           = local.origin_nearest
    viewer_protocol_policy     = "https-only"
    allowed_methods            = ["GET", "HEAD", "OPTIONS"]
    cached_methods             = ["GET", "HEAD"]
    cache_policy_id            = data.aws_cloudfront_cache_policy.disabled.id
    origin_request_policy_id   = data.aws_cloudfront_origin_request_policy.all_viewer_except_host.id
    response_headers_policy_id = aws_cloudfront_response_headers_policy.security.id
    compress                   = false
  }

  # Seat maps (event and section, binary or ?format=json): cached as the origin says.
  ordered_cache_behavior {
    path_pattern               = "/v1/events/*/seatmap"
    target_origin_id           = local.origin_shielded
    viewer_protocol_policy     = "https-only"
    allowed_methods            = ["GET", "HEAD", "OPTIONS"]
    cached_methods             = ["GET", "HEAD"]
    cache_policy_id            = aws_cloudfront_cache_policy.honour_origin.id
    response_headers_policy_id = aws_cloudfront_response_headers_policy.security.id
    # The origin pre-compresses each version once; CloudFront must not re-compress.
    compress = false
  }

  # Everything else (writes, holds, orders, waiting room, event details): uncached.
  default_cache_behavior {
    target_origin_id           = local.origin_nearest
    viewer_protocol_policy     = "https-only"
    allowed_methods            = ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"]
    cached_methods             = ["GET", "HEAD"]
    cache_policy_id            = data.aws_cloudfront_cache_policy.disabled.id
    origin_request_policy_id   = data.aws_cloudfront_origin_request_policy.all_viewer_except_host.id
    response_headers_policy_id = aws_cloudfront_response_headers_policy.security.id
    compress                   = false
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  viewer_certificate {
    acm_certificate_arn      = aws_acm_certificate_validation.viewer.certificate_arn
    ssl_support_method       = "sni-only"
    minimum_protocol_version = "TLSv1.2_2021"
  }
}

# --- WAF ---

resource "aws_wafv2_web_acl" "edge" {
  region      = local.global_region
  name        = var.name
  description = "Tessera edge: reputation, managed rules, Bot Control, per-IP rate limits"
  scope       = "CLOUDFRONT"
  tags        = local.tags

  default_action {
    allow {}
  }

  rule {
    name     = "ip-reputation"
    priority = 0
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesAmazonIpReputationList"
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-ip-reputation"
      sampled_requests_enabled   = true
    }
  }

  # Hosting providers' addresses (where bot fleets run) are blocked; VPN / Tor addresses are only
  # counted: real fans use them too.
  rule {
    name     = "anonymous-ip"
    priority = 6
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesAnonymousIpList"
        rule_action_override {
          name = "AnonymousIPList"
          action_to_use {
            count {}
          }
        }
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-anonymous-ip"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "rate-per-ip"
    priority = 1
    action {
      block {}
    }
    statement {
      rate_based_statement {
        limit              = var.rate_limit_per_ip
        aggregate_key_type = "IP"
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-rate-per-ip"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "write-rate-per-ip"
    priority = 2
    action {
      block {}
    }
    statement {
      rate_based_statement {
        limit              = var.write_rate_limit_per_ip
        aggregate_key_type = "IP"
        scope_down_statement {
          or_statement {
            statement {
              byte_match_statement {
                search_string         = "/holds"
                positional_constraint = "ENDS_WITH"
                field_to_match {
                  uri_path {}
                }
                text_transformation {
                  priority = 0
                  type     = "LOWERCASE"
                }
              }
            }
            statement {
              byte_match_statement {
                search_string         = "/v1/holds/"
                positional_constraint = "STARTS_WITH"
                field_to_match {
                  uri_path {}
                }
                text_transformation {
                  priority = 0
                  type     = "LOWERCASE"
                }
              }
            }
            statement {
              byte_match_statement {
                search_string         = "/v1/orders"
                positional_constraint = "STARTS_WITH"
                field_to_match {
                  uri_path {}
                }
                text_transformation {
                  priority = 0
                  type     = "LOWERCASE"
                }
              }
            }
          }
        }
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-write-rate-per-ip"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "common"
    priority = 3
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesCommonRuleSet"
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-common"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "known-bad-inputs"
    priority = 4
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesKnownBadInputsRuleSet"
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-known-bad-inputs"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "bot-control"
    priority = 5
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesBotControlRuleSet"
        managed_rule_group_configs {
          aws_managed_rules_bot_control_rule_set {
            inspection_level = var.bot_control_inspection_level
          }
        }
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-bot-control"
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = var.name
    sampled_requests_enabled   = true
  }
}

resource "aws_kms_key" "waf_logs" {
  region                  = local.global_region
  description             = "${var.name}: WAF and origin-secret rotation logs"
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
        Principal = { Service = "logs.${local.global_region}.amazonaws.com" }
        Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
      },
    ]
  })
  tags = local.tags
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

# WAF log groups must be named aws-waf-logs-*.
resource "aws_cloudwatch_log_group" "waf" {
  region            = local.global_region
  name              = "aws-waf-logs-${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.waf_logs.arn
  tags              = local.tags
}

resource "aws_wafv2_web_acl_logging_configuration" "edge" {
  region                  = local.global_region
  resource_arn            = aws_wafv2_web_acl.edge.arn
  log_destination_configs = [aws_cloudwatch_log_group.waf.arn]

  redacted_fields {
    single_header {
      name = "authorization"
    }
  }
}
