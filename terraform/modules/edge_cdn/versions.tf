terraform {
  # >= 1.11: the environments' S3 backend locks with use_lockfile, generally available from 1.11;
  # one floor for every module and environment.
  required_version = ">= 1.11"

  required_providers {
    # >= 6.0: resources take a `region` argument (CloudFront's certificate and web ACL live in
    # us-east-1 whatever the environment's default region).
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0"
    }
    # The first value of the origin secret; the rotation Lambda generates the later ones.
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6"
    }
    # Packages the rotation Lambda from rotation/origin_secret.py.
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4"
    }
  }
}
