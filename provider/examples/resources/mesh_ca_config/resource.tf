resource "mesh_ca_config" "ca" {
  leaf_cert_ttl    = "72h"
  private_key_type = "ec"
}
