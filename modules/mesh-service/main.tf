# A service with a Connect sidecar, its upstreams, and the intentions that let
# the listed sources call it.

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

resource "mesh_intention" "allow" {
  for_each    = toset(var.allowed_sources)
  source      = each.value
  destination = var.name
  action      = "allow"
}
