resource "mesh_ingress_gateway" "edge" {
  name = "ingress"
  listener {
    port     = 8443
    protocol = "http"
    service {
      name  = "web"
      hosts = ["web.example.com"]
    }
  }
}
