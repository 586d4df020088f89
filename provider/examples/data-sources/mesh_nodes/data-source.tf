data "mesh_nodes" "all" {}

# Node name to address.
output "node_addresses" {
  value = { for n in data.mesh_nodes.all.nodes : n.name => n.address }
}
