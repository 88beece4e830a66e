# One nats-server configuration, built from the data the local tooling builds it from: the
# package data in tessera/resources/nats/server (region.json: what every server has besides its
# own values; permissions.json: the account and its users' permissions) and this server's own
# values. tessera_ops.servers.nats_server_config takes the same steps in the same order (a later
# key wins, as in merge()), and tests/unit/terraform applies this module to check that both
# write the same bytes.

locals {
  resources   = "${path.module}/../../../../tessera/resources/nats/server"
  shape       = jsondecode(file("${local.resources}/region.json"))
  permissions = jsondecode(file("${local.resources}/permissions.json"))
  env         = local.shape.environment
  account     = local.permissions.account
  role        = var.hub ? "hub" : "region"

  # merge() skips a null argument: no TLS, no tls block.
  tls_listener = var.tls == null ? null : { tls = merge(var.tls, local.shape.tls_listener) }
  tls_client   = var.tls == null ? null : { tls = var.tls }

  users = [for name in local.shape.users[local.role] : {
    user = name, password = local.env[name]
    permissions = {
      publish   = { allow = local.permissions.users[name].publish }
      subscribe = { allow = local.permissions.users[name].subscribe }
    }
  }]

  # Indexed by role rather than a conditional: the two objects have different attributes.
  leafnodes = {
    hub = merge({
      listen = var.leaf_listen
      authorization = { users = [{
        user = local.permissions.leaf.user, password = local.env.leaf, account = local.account
      }] }
    }, local.tls_listener)
    region = {
      remotes = [merge(local.shape.leaf_remote, {
        urls         = local.env.hub_leaf_urls
        account      = local.account
        deny_exports = local.permissions.leaf.deny_exports
      }, local.tls_client)]
    }
  }[local.role]

  config = merge({
    server_name = var.server_name
    listen      = var.client_listen
    http        = var.monitor_listen
    jetstream = merge(local.shape.jetstream, {
      store_dir        = var.store_dir
      domain           = var.domain
      max_file_store   = var.max_file_store_bytes
      max_memory_store = var.max_memory_store_bytes
    })
    accounts  = { (local.account) = merge(local.shape.account, { users = local.users }) }
    leafnodes = local.leafnodes
  }, var.cluster == null ? null : { cluster = merge(var.cluster, local.tls_listener) })

  # jsonencode escapes <, > and & (as \u003c, \u003e, \u0026), which nats-server's parser
  # refuses: write them as they are (json.dumps does). Then unquote the environment references:
  # nats-server resolves $NAME only bare (a whole string value: after `:`, `[` or `,`).
  json = replace(replace(replace(jsonencode(local.config), "\\u003e", ">"), "\\u003c", "<"), "\\u0026", "&")
  text = replace(local.json, "/([\\[:,])\"(\\$TESSERA_NATS_[A-Z_]+)\"/", "$1$2")
}
