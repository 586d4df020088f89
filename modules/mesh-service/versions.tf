terraform {
  required_providers {
    mesh = { source = "mesh/mesh" }
  }
}
