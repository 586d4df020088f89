resource "mesh_kv" "limit" {
  path  = "app/config/limit"
  value = "100"
}
