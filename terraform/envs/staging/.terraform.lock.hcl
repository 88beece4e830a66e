# This file is maintained automatically by "terraform init".
# Manual edits may be lost in future updates.

provider "registry.terraform.io/cockroachdb/cockroach" {
  version     = "1.12.2"
  constraints = ">= 1.12.0"
}

provider "registry.terraform.io/hashicorp/archive" {
  version     = "2.7.1"
  constraints = ">= 2.4.0"
}

provider "registry.terraform.io/hashicorp/aws" {
  version     = "6.46.0"
  constraints = ">= 6.0.0"
}

provider "registry.terraform.io/hashicorp/random" {
  version     = "3.7.2"
  constraints = ">= 3.6.0"
}

provider "registry.terraform.io/hashicorp/tls" {
  version     = "4.2.1"
  constraints = ">= 4.0.0"
}
