# The api backend: a sidecar that calls the database, and L7 rules for who may
# call the api itself.
service {
  name = "api"
  id   = "api-1"
  port = 9090

  checks = [
    {
      id       = "api-tcp"
      tcp      = "127.0.0.1:9090"
      interval = "10s"
    }
  ]

  connect {
    sidecar_service {
      proxy {
        upstreams = [
          {
            destination_name = "db"
            local_bind_port  = 5432
          }
        ]
      }
    }
  }
}

config_entry {
  kind     = "service-defaults"
  name     = "api"
  protocol = "http"
}

config_entry {
  kind = "service-intentions"
  name = "api"
  sources = [
    {
      name = "web"
      permissions = [
        {
          action = "allow"
          http = {
            path_prefix = "/v1/"
            methods     = ["GET", "POST"]
          }
        },
      ]
    },
    {
      name   = "*"
      action = "deny"
    }
  ]
}
