# A service with a Connect sidecar, its upstreams, the intentions that let
# the listed sources call it and, when `protocol` is set, its
# service-defaults config entry.

resource "mesh_service" "this" {
  node    = var.node
  address = var.address
  name    = var.name
  port    = var.port
  tags    = var.tags

  sidecar {
    port = var.sidecar_port
    dynamic "upstream" {
      for_each = var.upstreams
      content {
        destination_name = upstream.value.name
        local_bind_port  = upstream.value.local_port
      }
    }
  }
}

resource "mesh_config_entry" "defaults" {
  count       = var.protocol == null ? 0 : 1
  kind        = "service-defaults"
  name        = var.name
  config_json = jsonencode({ Protocol = var.protocol })
}

resource "mesh_intention" "allow" {
  for_each    = toset(var.allowed_sources)
  source      = each.value
  destination = var.name
  action      = "allow"
}
