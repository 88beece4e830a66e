terraform {
  required_version = ">= 1.9.0"

  required_providers {
    # >= 6.0: resources take a `region` argument, so one provider configuration serves every
    # region the environment calls this module for.
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0"
    }
  }
}
