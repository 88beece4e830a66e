terraform {
  # >= 1.11: the environments' S3 backend locks with use_lockfile, generally available from 1.11;
  # one floor for every module and environment.
  required_version = ">= 1.11"

  required_providers {
    # >= 6.0: every regional resource takes a `region` argument, so one provider configuration
    # serves every region and the module iterates over them.
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
