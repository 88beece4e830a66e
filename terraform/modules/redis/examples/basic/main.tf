# The Valkey module on its own: the writer's region with 5 shards (the waiting rooms of a
# 14-million-fan onsale, docs/capacity.md) as the global datastore's primary. Each further
# region in `regions` gets a secondary of it and a writable group of its own `shards` for its
# edges (terraform/envs/prod/main.tf).

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
  }
}

provider "aws" {
  region = "us-east-1"
}

module "redis" {
  source = "../.."

  name_prefix    = "tessera-example"
  primary_region = "us-east-1"
  regions = {
    "us-east-1" = {
      vpc_id        = "vpc-0a1b2c3d4e5f60718"
      subnet_ids    = ["subnet-0a1b2c3d4e5f60711", "subnet-0a1b2c3d4e5f60712", "subnet-0a1b2c3d4e5f60713"]
      allowed_cidrs = ["10.10.0.0/16"]
      shards        = 5
    }
  }
  node_type          = "cache.r7g.large"
  replicas_per_shard = 1
  engine_version     = "8.0"
  tags               = { "tessera:environment" = "example" }
}

output "writable_nodes" {
  description = "Each region's writable group and its nodes."
  value       = module.redis.writable_nodes
}
