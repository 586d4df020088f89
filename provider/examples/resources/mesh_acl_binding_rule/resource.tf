# A login gets the service identity its JWT's `service` claim names.
resource "mesh_acl_binding_rule" "service" {
  auth_method = "idp"
  bind_type   = "service"
  bind_name   = "$${value.svc}"
  selector    = "value.svc != \"db\""
}
