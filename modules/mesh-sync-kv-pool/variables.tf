# The CTS module contract: mesh sync (or consul-terraform-sync) fills this in.
variable "services" {
  description = "Service instances from the catalog, keyed <id>.<node>.<datacenter>"
  type = map(
    object({
      id        = string
      name      = string
      kind      = string
      address   = string
      port      = number
      meta      = map(string)
      tags      = list(string)
      namespace = string
      status    = string

      node                  = string
      node_id               = string
      node_address          = string
      node_datacenter       = string
      node_tagged_addresses = map(string)
      node_meta             = map(string)

      cts_user_defined_meta = map(string)
    })
  )
}

variable "kv_prefix" {
  description = "KV prefix under which each service's pool is written"
  type        = string
  default     = "sync/pools"

  validation {
    condition     = length(var.kv_prefix) > 0 && !startswith(var.kv_prefix, "/") && !endswith(var.kv_prefix, "/")
    error_message = "kv_prefix must be a non-empty KV path without a leading or trailing slash."
  }
}
