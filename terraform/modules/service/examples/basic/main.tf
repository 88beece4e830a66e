# The service module on its own: one region's edge tier behind a public load balancer that only
# our CloudFront distribution can use (origin header), an internal listener for /metrics and the
# admin API, and a raised floor for an announced onsale.
#
#   terraform -chdir=terraform/modules/service/examples/basic init && terraform ... plan

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
  region = "eu-west-1"
}

module "edge" {
  source = "../.."

  name       = "tessera-example-edge-eu-west-1"
  tier       = "edge"
  region     = "eu-west-1"
  image      = "registry.example.com/tessera@sha256:603c1614873d47ea1b6cc283c5d92d387fac752c1007a5ee41f7e8b98b6df753"
  cpu        = 2048
  memory     = 4096
  vpc_id     = "vpc-0a1b2c3d4e5f60718"
  subnet_ids = ["subnet-0a1b2c3d4e5f60711", "subnet-0a1b2c3d4e5f60712", "subnet-0a1b2c3d4e5f60713"]

  scaling = {
    min                 = 3
    max                 = 30
    cpu_target_percent  = 60
    requests_per_target = 300000
  }
  scheduled_minimums = [
    { name = "arena-tour", from = "2027-01-10T09:00:00Z", until = "2027-01-10T12:00:00Z", min = 70 },
  ]

  environment = {
    TESSERA_ORIGIN_URLS        = "https://regional.eu-west-1.example.com"
    TESSERA_WRITER_URL         = "https://writer.example.com"
    TESSERA_EDGE_INTERNAL_PORT = "9100"
  }
  secret_names = {
    TESSERA_ADMISSION_SECRET = "tessera/example/admission-secret"
    TESSERA_ADMIN_KEY        = "tessera/example/edge-admin-key"
  }

  load_balancer = {
    internal                = false
    subnet_ids              = ["subnet-0a1b2c3d4e5f60721", "subnet-0a1b2c3d4e5f60722", "subnet-0a1b2c3d4e5f60723"]
    ingress_prefix_list_ids = ["pl-4fa04526"]
    hostname                = "edge.eu-west-1.example.com"
    extra_certificate_names = ["origin.example.com"]
    zone_id                 = "Z0123456789EXAMPLE"
    origin_header_name      = "X-Origin-Secret"
    blocked_paths           = ["/metrics", "/metrics/*", "/v1/admin", "/v1/admin/*"]
  }
  # In an environment: module.cdn.origin_secret_values (read from Secrets Manager).
  origin_secret_values = [for v in random_password.example : v.result]

  internal_listener = {
    port          = 9100
    subnet_ids    = ["subnet-0a1b2c3d4e5f60711", "subnet-0a1b2c3d4e5f60712", "subnet-0a1b2c3d4e5f60713"]
    ingress_cidrs = ["10.20.0.0/16"]
    hostname      = "edge-admin.eu-west-1.example.com"
    zone_id       = "Z0123456789EXAMPLE"
  }

  tags = { "tessera:environment" = "example" }
}

resource "random_password" "example" {
  for_each = toset(["previous", "current", "next"])

  length  = 64
  upper   = false
  special = false
}

output "url" {
  description = "The edge's public URL."
  value       = module.edge.url
}
