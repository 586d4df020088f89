resource "mesh_terminating_gateway" "egress" {
  name = "egress"
  service {
    name    = "billing"
    ca_file = "/etc/ssl/billing-ca.pem"
    sni     = "billing.example.com"
  }
}
