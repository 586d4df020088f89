resource "mesh_service" "web" {
  node    = "ext-1"
  address = "10.0.0.5"
  name    = "web"
  port    = 8080
  tags    = ["v1"]

  check {
    check_id = "web-alive"
    name     = "web alive"
    status   = "passing"
  }

  sidecar {
    port = 21000
    upstream {
      destination_name = "db"
      local_bind_port  = 9191
    }
  }
}
