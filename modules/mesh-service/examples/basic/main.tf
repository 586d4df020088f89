# The mesh-service module on its own: "api" speaks HTTP, calls "db" through
# its sidecar on localhost:15432, and "web" may call it.
terraform {
  required_version = ">= 1.5"

  required_providers {
    mesh = { source = "mesh/mesh" }
  }
}

variable "mesh_address" {
  description = "HTTP address of a mesh agent."
  type        = string
  default     = "127.0.0.1:8500"
}

provider "mesh" {
  address = var.mesh_address
}

module "api" {
  source = "../.."

  name            = "api"
  node            = "ext-api"
  address         = "10.0.2.10"
  port            = 9090
  protocol        = "http"
  tags            = ["v1"]
  upstreams       = [{ name = "db", local_port = 15432 }]
  allowed_sources = ["web"]
}

output "api_id" {
  value = module.api.id
}

output "api_intentions" {
  value = module.api.intentions
}
