# One of three servers. Start each with its own node_name and bind_addr:
#   mesh agent -config-file examples/agent/server.hcl

datacenter       = "dc1"
node_name        = "server-1"
server           = true
bootstrap_expect = 3
data_dir         = "/var/lib/mesh"

bind_addr      = "0.0.0.0"
advertise_addr = "10.0.0.11"
client_addr    = "127.0.0.1"

retry_join     = ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
retry_interval = "15s"

# Generate your own with `mesh keygen`.
encrypt = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="

log_level = "info"
ui        = true

addresses {
  http = "0.0.0.0"
}

ports {
  http     = 8500
  grpc     = 8502
  dns      = 8600
  serf_lan = 8301
  server   = 8300
}

performance {
  raft_multiplier = 1
}

connect {
  enabled = true
}

acl {
  enabled        = false
  default_policy = "allow"
}

domain    = "consul"
recursors = ["1.1.1.1", "9.9.9.9:53"]

dns_config {
  allow_stale      = true
  udp_answer_limit = 3
  enable_truncate  = true
  only_passing     = false
}

config_entries {
  bootstrap {
    kind = "proxy-defaults"
    name = "global"
    config {
      protocol = "http"
    }
  }
  bootstrap {
    kind     = "service-defaults"
    name     = "web"
    protocol = "http"
  }
}
