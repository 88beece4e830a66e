# The observability module on its own: alarms and the onsale dashboard for two regions. In an
# environment every input comes from the other modules' outputs (terraform/envs/*/main.tf).

terraform {
  required_version = ">= 1.11"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0"
    }
  }
}

provider "aws" {
  region = "us-east-1"
}

module "observability" {
  source = "../.."

  name_prefix = "tessera-example"
  hub_region  = "us-east-1"
  regions     = ["us-east-1", "eu-west-1"]
  load_balancers = {
    "writer/us-east-1" = { region = "us-east-1", tier = "writer", arn_suffix = "app/tessera-example-writer/50dc6c495c0c9188" }
    "edge/us-east-1"   = { region = "us-east-1", tier = "edge", arn_suffix = "app/tessera-example-edge-us-east-1/6d0ecf831eec9f09" }
    "edge/eu-west-1"   = { region = "eu-west-1", tier = "edge", arn_suffix = "app/tessera-example-edge-eu-west-1/2ab5c8f1e0d3c4b7" }
  }
  services = {
    "writer/us-east-1" = { region = "us-east-1", cluster_name = "tessera-example-writer", service_name = "tessera-example-writer" }
    "edge/us-east-1"   = { region = "us-east-1", cluster_name = "tessera-example-edge-us-east-1", service_name = "tessera-example-edge-us-east-1" }
    "edge/eu-west-1"   = { region = "eu-west-1", cluster_name = "tessera-example-edge-eu-west-1", service_name = "tessera-example-edge-eu-west-1" }
  }
  nats_load_balancers = {
    "us-east-1" = { arn_suffix = "net/tessera-example-nats-us-east-1/8b3b2e1f0c9d7a6e", target_group_arn_suffix = "targetgroup/tessera-example-nc-us-east-1/4f1e2d3c5b6a7980", nodes = 3 }
  }
  redis_nodes = {
    "us-east-1" = { replication_group_id = "tessera-example-us-east-1", node_ids = ["tessera-example-us-east-1-0001-001", "tessera-example-us-east-1-0001-002"] }
  }
  notification_emails = ["oncall@example.com"]
  thresholds          = { hold_latency_p99_s = 0.5, outbox_unpublished = 1000 }
  tags                = { "tessera:environment" = "example" }
}

output "dashboard" {
  description = "The CloudWatch onsale dashboard."
  value       = module.observability.dashboard
}
