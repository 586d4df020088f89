data "mesh_services" "all" {}

# The services tagged v1.
output "v1_services" {
  value = [
    for name in data.mesh_services.all.names :
    name if contains(data.mesh_services.all.tags[name], "v1")
  ]
}
