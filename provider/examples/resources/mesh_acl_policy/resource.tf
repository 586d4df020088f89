resource "mesh_acl_policy" "web" {
  name        = "web"
  description = "What the web service and its sidecar may do"
  rules       = <<-RULES
    service "web" {
      policy     = "write"
      intentions = "read"
    }
    service_prefix "" { policy = "read" }
    node_prefix "" { policy = "read" }
    key_prefix "web/" { policy = "write" }
  RULES
}
