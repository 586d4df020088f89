terraform {
  required_version = ">= 1.4.0"
  required_providers {
    mesh = {
      source = "mesh/mesh"
    }
  }
}
