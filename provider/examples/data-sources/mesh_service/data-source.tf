data "mesh_service" "web" {
  name = "web"
}

# Each instance as host:port, using the service address when it has one.
output "web_endpoints" {
  value = [
    for i in data.mesh_service.web.instances :
    "${coalesce(i.service_address, i.address)}:${i.port}"
  ]
}
