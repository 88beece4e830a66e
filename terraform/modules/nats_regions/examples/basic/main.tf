# The NATS module on its own: one region, the hub (as in staging), three nodes configured from
# the tessera package's data (tessera/resources/nats). Each further region in `regions` gets its
# own three nodes, leaf-connected to the hub (terraform/envs/prod/main.tf).

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
    tls = {
      source  = "hashicorp/tls"
      version = ">= 4.0"
    }
  }
}

provider "aws" {
  region = "us-east-1"
}

module "nats" {
  source = "../.."

  name_prefix = "tessera-example"
  hub_region  = "us-east-1"
  regions = {
    "us-east-1" = {
      vpc_id       = "vpc-0a1b2c3d4e5f60718"
      subnet_ids   = ["subnet-0a1b2c3d4e5f60711", "subnet-0a1b2c3d4e5f60712", "subnet-0a1b2c3d4e5f60713"]
      client_cidrs = ["10.10.0.0/16"]
    }
  }
  dns_zone         = { id = "Z0123456789EXAMPLE", name = "example.com" }
  nodes_per_region = 3
  instance_type    = "m7i.large"
  volume_size_gib  = 200
  tags             = { "tessera:environment" = "example" }
}

output "streams" {
  description = "What each region's read nodes consume."
  value       = module.nats.streams
}
