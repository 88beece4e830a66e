terraform {
  # >= 1.11: the environments' S3 backend locks with use_lockfile, generally available from 1.11;
  # one floor for every module and environment.
  required_version = ">= 1.11"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0"
    }
    # >= 1.12: the cluster's `labels`.
    cockroach = {
      source  = "cockroachdb/cockroach"
      version = ">= 1.12"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6"
    }
    tls = {
      source  = "hashicorp/tls"
      version = ">= 4.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4"
    }
  }

  # State in S3 (encrypted, versioned, locked with use_lockfile, an S3 lock object: no DynamoDB
  # table): it holds generated passwords. The bucket, key and region come from
  # `terraform init -backend-config=backend.hcl` (see backend.hcl.example), so no account's
  # bucket name is written here.
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
