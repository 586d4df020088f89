# The Connect CA: a generated EC P-256 root; leaves live a day.
ca {
  provider = "consul"
  config {
    leaf_cert_ttl    = "24h"
    root_cert_ttl    = "87600h"
    private_key_type = "ec"
    private_key_bits = 256
  }
}
