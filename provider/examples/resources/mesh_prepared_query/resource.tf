# Healthy primaries of web, by name over HTTP and as
# web-primary.query.consul over DNS.
resource "mesh_prepared_query" "web_primary" {
  name         = "web-primary"
  service      = "web"
  only_passing = true
  tags         = ["primary", "!canary"]
  dns_ttl      = "10s"
}

# A template: geo-<service> runs a query for <service>.
resource "mesh_prepared_query" "geo" {
  name            = "geo-"
  service         = "$${match(1)}"
  template_type   = "name_prefix_match"
  template_regexp = "^geo-(.+)$"
}
