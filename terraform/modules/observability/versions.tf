terraform {
  # >= 1.11: the environments' S3 backend locks with use_lockfile, generally available from 1.11;
  # one floor for every module and environment.
  required_version = ">= 1.11"

  required_providers {
    # >= 6.0: resources take a `region` argument; alarms live in the region of their metrics.
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0"
    }
  }
}
