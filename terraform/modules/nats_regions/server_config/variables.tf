# One server's own values, under the names of tessera_ops.servers.NatsServerSettings (the unit
# tests compare them): everything else comes from region.json and permissions.json.

variable "server_name" {
  type        = string
  description = "The server's unique name, e.g. us-east-1-nats-0."
}

variable "client_listen" {
  type        = string
  description = "Client host:port, e.g. 0.0.0.0:4222."
}

variable "monitor_listen" {
  type        = string
  description = "Monitoring host:port (/healthz, /leafz, /jsz), e.g. 0.0.0.0:8222."
}

variable "store_dir" {
  type        = string
  description = "JetStream storage directory, e.g. /var/lib/nats/jetstream."
}

variable "domain" {
  type        = string
  description = "The region's JetStream domain (the hub's is what the regional mirror definitions name as source_domain)."
}

variable "hub" {
  type        = bool
  description = "True in the writer's region: the writer and notifier users and the leaf-node listener; false elsewhere: a leaf remote to the hub."
}

variable "max_file_store_bytes" {
  type        = number
  description = "JetStream file store limit, in bytes."
}

variable "max_memory_store_bytes" {
  type        = number
  description = "JetStream memory store limit, in bytes."
}

variable "leaf_listen" {
  type        = string
  description = "The hub's leaf-node host:port the regions connect to, e.g. 0.0.0.0:7422; null outside the hub."
  default     = null

  validation {
    condition     = var.hub == (var.leaf_listen != null)
    error_message = "leaf_listen: a hub needs one (the regions connect to it), a region none."
  }
}

variable "cluster" {
  type = object({
    name   = string
    listen = string
    routes = list(string)
  })
  description = "A routed cluster of the region's servers (production: three): its name (the same for the region's servers, unique per region), this server's route host:port and every server's route URL. Null: a single server."
  default     = null
}

variable "tls" {
  type = object({
    cert_file = string
    key_file  = string
    ca_file   = string
  })
  description = "PEM files for mutual TLS on routes and leaf-node connections: this server's certificate (also its client certificate), its key, the CA that signed every server's. Null: no TLS."
  default     = null
}
