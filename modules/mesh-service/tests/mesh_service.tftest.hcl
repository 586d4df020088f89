# `terraform test` for the module. The plan runs check that the variables'
# validation refuses bad inputs; they use a mock of the provider, so they
# need no agent. The last run applies against a real agent, found through
# MESH_HTTP_ADDR (default 127.0.0.1:8500), and checks the outputs;
# terraform test destroys what it created.

mock_provider "mesh" {
  alias = "offline"
}

variables {
  name            = "tftest-web"
  node            = "tftest-node"
  address         = "10.0.9.1"
  port            = 8080
  protocol        = "http"
  tags            = ["v1"]
  sidecar_port    = 21000
  upstreams       = [{ name = "tftest-db", local_port = 15432 }]
  allowed_sources = ["tftest-client"]
}

run "name_must_be_a_dns_label" {
  command   = plan
  providers = { mesh = mesh.offline }

  variables {
    name = "web_1!"
  }

  expect_failures = [var.name]
}

run "name_must_not_be_empty" {
  command   = plan
  providers = { mesh = mesh.offline }

  variables {
    name = ""
  }

  expect_failures = [var.name]
}

run "node_must_be_a_dns_name" {
  command   = plan
  providers = { mesh = mesh.offline }

  variables {
    node = "node one"
  }

  expect_failures = [var.node]
}

run "address_must_not_be_empty" {
  command   = plan
  providers = { mesh = mesh.offline }

  variables {
    address = ""
  }

  expect_failures = [var.address]
}

run "port_must_be_in_range" {
  command   = plan
  providers = { mesh = mesh.offline }

  variables {
    port = 0
  }

  expect_failures = [var.port]
}

run "sidecar_port_must_be_in_range" {
  command   = plan
  providers = { mesh = mesh.offline }

  variables {
    sidecar_port = 65536
  }

  expect_failures = [var.sidecar_port]
}

run "protocol_must_be_one_the_provider_accepts" {
  command   = plan
  providers = { mesh = mesh.offline }

  variables {
    protocol = "https"
  }

  expect_failures = [var.protocol]
}

run "tags_must_not_be_empty" {
  command   = plan
  providers = { mesh = mesh.offline }

  variables {
    tags = ["v1", ""]
  }

  expect_failures = [var.tags]
}

run "upstreams_need_their_own_local_ports" {
  command   = plan
  providers = { mesh = mesh.offline }

  variables {
    upstreams = [
      { name = "tftest-db", local_port = 15432 },
      { name = "tftest-cache", local_port = 15432 },
    ]
  }

  expect_failures = [var.upstreams]
}

run "allowed_sources_must_be_service_names" {
  command   = plan
  providers = { mesh = mesh.offline }

  variables {
    allowed_sources = ["tftest client"]
  }

  expect_failures = [var.allowed_sources]
}

run "applies_against_the_agent" {
  assert {
    condition     = output.id == "tftest-node/tftest-web"
    error_message = "id is ${output.id}, not tftest-node/tftest-web"
  }

  assert {
    condition     = output.sidecar_service_id == "tftest-web-sidecar-proxy"
    error_message = "sidecar_service_id is ${output.sidecar_service_id}"
  }

  assert {
    condition     = output.intentions == ["tftest-client/tftest-web"]
    error_message = "intentions are ${jsonencode(output.intentions)}"
  }

  assert {
    condition     = mesh_service.this.sidecar.upstream[0].destination_name == "tftest-db"
    error_message = "the sidecar's upstream is not tftest-db"
  }

  assert {
    condition     = jsondecode(mesh_config_entry.defaults[0].config_json).Protocol == "http"
    error_message = "service-defaults does not say http"
  }
}
