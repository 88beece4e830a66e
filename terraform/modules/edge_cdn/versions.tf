terraform {
  required_version = ">= 1.9.0"

  required_providers {
    # >= 6.0: resources take a `region` argument (CloudFront's certificate and web ACL live in
    # us-east-1 whatever the environment's default region).
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0"
    }
  }
}
