terraform {
  # >= 1.11: the environments' S3 backend locks with use_lockfile, generally available from 1.11;
  # one floor for every module and environment.
  required_version = ">= 1.11"

  required_providers {
    # >= 1.12: the cluster's `labels`.
    cockroach = {
      source  = "cockroachdb/cockroach"
      version = ">= 1.12"
    }
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
