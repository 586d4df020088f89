variable "idp_public_key" {
  type        = string
  description = "The identity provider's public key (PEM)."
}

# Logins with JWTs signed by the identity provider's key.
resource "mesh_acl_auth_method" "idp" {
  name          = "idp"
  type          = "jwt"
  max_token_ttl = "1h"
  config_json = jsonencode({
    JWTValidationPubKeys = [var.idp_public_key]
    JWTSupportedAlgs     = ["ES256"]
    BoundIssuer          = "https://idp.example"
    ClaimMappings        = { service = "svc" }
  })
}
