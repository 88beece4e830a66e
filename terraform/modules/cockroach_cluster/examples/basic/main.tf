# The CockroachDB module on its own: a two-region Advanced cluster, the writer's region first.
# The provider reads its API key from COCKROACH_API_KEY.

terraform {
  required_version = ">= 1.11"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0"
    }
    cockroach = {
      source  = "cockroachdb/cockroach"
      version = ">= 1.12"
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

provider "cockroach" {}

module "database" {
  source = "../.."

  cluster_name = "tessera-example"
  regions = [
    { name = "us-east-1", node_count = 3 },
    { name = "eu-west-1", node_count = 3 },
  ]
  num_virtual_cpus   = 4
  storage_gib        = 50
  allowed_cidrs      = ["203.0.113.10/32", "198.51.100.0/24"]
  secret_region      = "us-east-1"
  secret_name_prefix = "tessera-example"
  labels             = { environment = "example" }
}

output "database_regions" {
  description = "Primary first, in CockroachDB's naming."
  value       = module.database.database_regions
}
