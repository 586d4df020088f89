output "id" {
  description = "`<node>/<service_id>` of the registration."
  value       = mesh_service.this.id
}

output "intentions" {
  description = "IDs of the intentions created."
  value       = [for i in mesh_intention.allow : i.id]
}
