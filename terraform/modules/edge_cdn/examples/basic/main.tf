# The CDN module on its own: CloudFront + WAF in front of two regions' edge load balancers, with
# the rotating origin secret. In an environment the origins and origin_guards come from the
# service module's outputs (terraform/envs/*/main.tf).

terraform {
  required_version = ">= 1.11"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4"
    }
  }
}

provider "aws" {
  region = "us-east-1"
}

module "cdn" {
  source = "../.."

  name            = "tessera-example"
  zone            = { id = "Z0123456789EXAMPLE", name = "example.com" }
  hostname        = "tickets.example.com"
  origin_hostname = "origin.example.com"
  origins = {
    "us-east-1" = { dns_name = "tessera-example-edge-us-east-1-1234567.us-east-1.elb.amazonaws.com", zone_id = "Z35SXDOTRQ7X7K" }
    "eu-west-1" = { dns_name = "tessera-example-edge-eu-west-1-7654321.eu-west-1.elb.amazonaws.com", zone_id = "Z32O12XQLNTSW2" }
  }
  origin_guards = {
    "us-east-1" = { listener_rule_arn = null, cluster_name = "tessera-example-edge-us-east-1", service_name = "tessera-example-edge-us-east-1" }
    "eu-west-1" = { listener_rule_arn = null, cluster_name = "tessera-example-edge-eu-west-1", service_name = "tessera-example-edge-eu-west-1" }
  }
  origin_shield_region            = "us-east-1"
  rate_limit_per_ip               = 6000
  write_rate_limit_per_ip         = 300
  bot_control_inspection_level    = "COMMON"
  origin_secret_rotation_schedule = "cron(0 4 ? * 3#1 *)"
  origin_secret_rotation_window   = "2h"
  tags                            = { "tessera:environment" = "example" }
}

output "url" {
  description = "What fans open."
  value       = module.cdn.url
}
