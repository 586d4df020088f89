resource "mesh_config_entry" "web" {
  kind        = "service-defaults"
  name        = "web"
  config_json = jsonencode({ Protocol = "http" })
}
