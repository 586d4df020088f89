terraform {
  required_providers {
    mesh = { source = "mesh/mesh" }
  }
}

# Defaults to MESH_HTTP_ADDR, then 127.0.0.1:8500.
provider "mesh" {
  address = "127.0.0.1:8500"
}
