# Owns every key under app/config/: a key added there by hand is removed
# on the next apply.
resource "mesh_key_prefix" "app_config" {
  path_prefix = "app/config/"
  subkeys = {
    "limit"       = "100"
    "feature/new" = "on"
  }
}
