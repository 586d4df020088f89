# Tokens that link this role may register `web` and its sidecar and
# read the catalog, plus what the `web-kv` policy grants.
resource "mesh_acl_role" "web" {
  name     = "web"
  policies = ["web-kv"]
  service_identity {
    service_name = "web"
  }
}
