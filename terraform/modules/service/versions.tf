terraform {
  # >= 1.11: the environments' S3 backend locks with use_lockfile, generally available from 1.11;
  # one floor for every module and environment.
  required_version = ">= 1.11"

  required_providers {
    # >= 6.0: resources take a `region` argument, so one provider configuration serves every
    # region the environment calls this module for.
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0"
    }
  }
}
