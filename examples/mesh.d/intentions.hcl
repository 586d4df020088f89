# Who may talk to the database: only the api. Deleting this file removes
# these intentions from the cluster on the next reload.
intention "api" "db" {
  action      = "allow"
  description = "api reads and writes orders"
}

intention "*" "db" {
  action = "deny"
}
