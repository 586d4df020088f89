# Two services wired through the mesh-service module: web calls db.
terraform {
  required_providers {
    mesh = { source = "mesh/mesh" }
  }
}

variable "mesh_address" {
  type    = string
  default = "127.0.0.1:8500"
}

provider "mesh" {
  address = var.mesh_address
}

module "db" {
  source          = "../../../modules/mesh-service"
  name            = "db"
  node            = "ext-db"
  address         = "10.0.1.10"
  port            = 5432
  allowed_sources = ["web"]
}

module "web" {
  source       = "../../../modules/mesh-service"
  name         = "web"
  node         = "ext-web"
  address      = "10.0.1.20"
  port         = 8080
  sidecar_port = 21001
  upstreams    = [{ name = "db", local_port = 15432 }]
}

output "web" {
  value = module.web.id
}
