resource "mesh_acl_policy" "web" {
  name  = "web"
  rules = <<-RULES
    service "web" { policy = "write" }
    service_prefix "" { policy = "read" }
  RULES
}

# The secret comes from a write-only argument and never reaches state.
variable "web_token_secret" {
  type      = string
  sensitive = true
  ephemeral = true
}

resource "mesh_acl_token" "web" {
  description  = "web service"
  policies     = [mesh_acl_policy.web.name]
  secret_id_wo = var.web_token_secret
}
