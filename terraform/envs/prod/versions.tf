terraform {
  required_version = ">= 1.9.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0"
    }
    cockroach = {
      source  = "cockroachdb/cockroach"
      version = ">= 1.11"
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

  # State in S3 (encrypted, versioned, locked): it holds generated passwords. The bucket, key and
  # region come from `terraform init -backend-config=backend.hcl` (see backend.hcl.example), so
  # no account's bucket name is written here.
  backend "s3" {}
}

# One provider configuration for every region: AWS provider >= 6 takes `region` per resource.
provider "aws" {
  region = var.regions[0]

  default_tags {
    tags = {
      "tessera:environment" = var.environment
      "tessera:managed-by"  = "terraform"
    }
  }
}

# The CockroachDB Cloud API key comes from COCKROACH_API_KEY in the environment.
provider "cockroach" {}
