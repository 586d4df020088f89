data "mesh_ca_roots" "current" {}

# Every root as one PEM bundle, for a client outside the mesh to trust
# the certificates that sidecars present.
output "ca_bundle" {
  value = join("\n", [for r in data.mesh_ca_roots.current.roots : trimspace(r.root_cert)])
}

output "trust_domain" {
  value = data.mesh_ca_roots.current.trust_domain
}
