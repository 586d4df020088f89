output "id" {
  description = "`<node>/<service_id>` of the registration (also its import ID)."
  value       = mesh_service.this.id
}

output "sidecar_service_id" {
  description = "Service ID of the sidecar proxy, `<name>-sidecar-proxy`."
  value       = "${mesh_service.this.service_id}-sidecar-proxy"
}

output "intentions" {
  description = "IDs (`<source>/<destination>`) of the intentions created, sorted by source."
  value       = [for i in mesh_intention.allow : i.id]
}
