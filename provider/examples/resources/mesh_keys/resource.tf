# Two keys written in one transaction. `delete = true` removes the key
# when it leaves the config or the resource is destroyed.
resource "mesh_keys" "app" {
  key {
    path  = "app/config/limit"
    value = "100"
  }
  key {
    path   = "app/config/mode"
    value  = "fast"
    delete = true
  }
}
