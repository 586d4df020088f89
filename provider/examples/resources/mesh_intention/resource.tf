resource "mesh_intention" "web_to_db" {
  source      = "web"
  destination = "db"
  action      = "allow"
}

resource "mesh_intention" "api_to_web" {
  source      = "api"
  destination = "web"
  permission {
    action = "allow"
    http {
      path_prefix = "/v1/"
      methods     = ["GET", "HEAD"]
    }
  }
}
