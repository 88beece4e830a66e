terraform {
  required_version = ">= 1.9.0"

  required_providers {
    # >= 6.0: resources take a `region` argument; the module spans every region.
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
