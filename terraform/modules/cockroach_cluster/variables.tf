variable "cluster_name" {
  type        = string
  description = "CockroachDB Cloud cluster name, e.g. \"tessera-prod\"."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,39}$", var.cluster_name))
    error_message = "cluster_name: 3-40 lowercase letters, digits or '-', starting with a letter."
  }
}

variable "cloud_provider" {
  type        = string
  description = "Cloud hosting the cluster: AWS (next to the services), GCP or AZURE."
  default     = "AWS"

  validation {
    condition     = contains(["AWS", "GCP", "AZURE"], var.cloud_provider)
    error_message = "cloud_provider must be AWS, GCP or AZURE."
  }
}

variable "regions" {
  type = list(object({
    name       = string
    node_count = number
  }))
  description = "The cluster's regions (cloud region names, e.g. us-east-1), the writer's home region FIRST: it becomes the database's PRIMARY REGION (the writer runs there; its writes commit there without a cross-region round trip). 3 nodes per region survive a node or zone failure."

  validation {
    condition     = length(var.regions) >= 1 && length(distinct([for r in var.regions : r.name])) == length(var.regions) && alltrue([for r in var.regions : r.node_count >= 3 && can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$|^[a-z]+-[a-z]+[0-9]$", r.name))])
    error_message = "At least one region, no repeats, each a cloud region name with at least 3 nodes."
  }
}

variable "num_virtual_cpus" {
  type        = number
  description = "vCPUs per node. BENCHMARKS.md: the writer group-commits holds (~650-700 holds/s per writer process on 2 shared cores, PostgreSQL included); each hold batch is one transaction."
  default     = 8

  validation {
    condition     = contains([2, 4, 8, 16, 32], var.num_virtual_cpus)
    error_message = "num_virtual_cpus must be 2, 4, 8, 16 or 32 (CockroachDB Cloud's node sizes)."
  }
}

variable "storage_gib" {
  type        = number
  description = "Storage per node (GiB)."
  default     = 150

  validation {
    condition     = var.storage_gib >= 15 && var.storage_gib <= 16384
    error_message = "storage_gib must be 15 to 16384."
  }
}

variable "cockroach_version" {
  type        = string
  description = "Major CockroachDB version (e.g. v25.2); null: the cloud's default at creation."
  default     = null

  validation {
    condition     = var.cockroach_version == null || can(regex("^v[0-9]+\\.[0-9]+$", var.cockroach_version))
    error_message = "cockroach_version must be null or a major version such as v25.2."
  }
}

variable "database_name" {
  type        = string
  description = "The Tessera database."
  default     = "tessera"
}

variable "sql_users" {
  type        = set(string)
  description = "SQL users to create, each with a generated password stored in a Secrets Manager secret as a full TESSERA_DATABASE_URL: tessera_writer (the writer, which also runs the migrations at start) and tessera_audit (for `tessera audit`)."
  default     = ["tessera_writer", "tessera_audit"]
}

variable "writer_user" {
  type        = string
  description = "Which of sql_users the writer connects as."
  default     = "tessera_writer"
}

variable "allowed_cidrs" {
  type        = list(string)
  description = "Networks allowed to open SQL connections (the NAT gateways' addresses of the writer's region, the operators' bastion); CIDR notation."

  validation {
    condition     = length(var.allowed_cidrs) > 0 && alltrue([for c in var.allowed_cidrs : can(cidrhost(c, 0)) && can(regex("/", c))])
    error_message = "allowed_cidrs: at least one, each in CIDR notation (e.g. 203.0.113.10/32)."
  }
}

variable "backup_retention_days" {
  type        = number
  description = "Managed backup retention (2, 7, 30, 90 or 365; fixed after creation)."
  default     = 30

  validation {
    condition     = contains([2, 7, 30, 90, 365], var.backup_retention_days)
    error_message = "backup_retention_days must be 2, 7, 30, 90 or 365."
  }
}

variable "delete_protection" {
  type        = bool
  description = "Refuse to delete the cluster (turn off deliberately before destroying an environment)."
  default     = true
}

variable "secret_region" {
  type        = string
  description = "AWS region of the connection-URL secrets: the writer's home region."

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.secret_region))
    error_message = "secret_region must be an AWS region name such as us-east-1."
  }
}

variable "secret_name_prefix" {
  type        = string
  description = "Prefix of the connection-URL secrets' names, e.g. \"tessera-prod\"."
}

variable "labels" {
  type        = map(string)
  description = "Labels of the cluster."
  default     = {}
}

variable "sslrootcert_path" {
  type        = string
  description = "Where the services find the cluster's CA certificate (sslrootcert in the URLs); the writer's init container writes it there from the `ca` secret."
  default     = "/tmp/cockroach-ca.pem"
}
