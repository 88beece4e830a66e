terraform {
  required_version = ">= 1.9.0"

  required_providers {
    cockroach = {
      source  = "cockroachdb/cockroach"
      version = ">= 1.11"
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
