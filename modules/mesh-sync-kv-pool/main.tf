# A load-balancer pool per service, the way a CTS module feeds a load
# balancer: every healthy instance's address:port, sorted, written to
# <kv_prefix>/<service> in mesh's KV (where a proxy or a script picks it up).

locals {
  names = distinct([for s in values(var.services) : s.name])
  pools = {
    for name in local.names : name => sort([
      for s in values(var.services) : "${s.address}:${s.port}" if s.name == name
    ])
  }
}

resource "mesh_kv" "pool" {
  for_each = local.pools

  path  = "${var.kv_prefix}/${each.key}"
  value = join(",", each.value)
}
