# Every mesh resource type and data source, against one agent.
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

resource "mesh_service" "web" {
  node    = "ext-1"
  address = "10.0.0.5"
  name    = "web"
  port    = 8080
  sidecar {
    port = 21000
    upstream {
      destination_name = "db"
      local_bind_port  = 9191
    }
  }
}

resource "mesh_config_entry" "web" {
  kind        = "service-defaults"
  name        = "web"
  config_json = jsonencode({ Protocol = "http" })
}

resource "mesh_ingress_gateway" "edge" {
  name = "ingress"
  listener {
    port     = 8443
    protocol = "http"
    service {
      name = "web"
    }
  }
}

resource "mesh_terminating_gateway" "egress" {
  name = "egress"
  service {
    name = "billing"
  }
}

resource "mesh_kv" "limit" {
  path  = "app/config/limit"
  value = "100"
}

resource "mesh_intention" "web_to_db" {
  source      = "web"
  destination = "db"
  action      = "allow"
}

data "mesh_services" "all" {}

data "mesh_nodes" "all" {}

output "services" {
  value = data.mesh_services.all.names
}
