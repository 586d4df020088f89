# The web frontend: a service with a managed sidecar that reaches the api
# through a local upstream on 127.0.0.1:9191.
service {
  name = "web"
  id   = "web-1"
  port = 8080
  tags = ["frontend", "v2"]
  meta = {
    team = "storefront"
  }

  check {
    id       = "web-http"
    http     = "http://127.0.0.1:8080/healthz"
    interval = "10s"
    timeout  = "2s"
  }

  connect {
    sidecar_service {
      proxy {
        upstreams = [
          {
            destination_name = "api"
            local_bind_port  = 9191
          }
        ]
      }
    }
  }
}

config_entry {
  kind     = "service-defaults"
  name     = "web"
  protocol = "http"
}
