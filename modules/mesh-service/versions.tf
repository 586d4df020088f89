terraform {
  required_version = ">= 1.5"

  required_providers {
    mesh = { source = "mesh/mesh" }
  }
}
