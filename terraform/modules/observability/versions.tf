terraform {
  required_version = ">= 1.9.0"

  required_providers {
    # >= 6.0: resources take a `region` argument; alarms live in the region of their metrics.
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0"
    }
  }
}
