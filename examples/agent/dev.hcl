# Extra settings for a development agent:
#   mesh agent -dev -config-file examples/agent/dev.hcl
# -dev already makes a single server that leads itself, with data in a temp dir.

node_name  = "dev"
datacenter = "dc1"
log_level  = "debug"
ui         = true

ports {
  # Keep Consul's ports so existing tools work unchanged; disable HTTPS.
  http  = 8500
  https = -1
  grpc  = 8502
  dns   = 8600
}

connect {
  enabled = true
}

dns_config {
  node_ttl    = "10s"
  service_ttl = {
    "*" = "5s"
  }
}
