variable "name" {
  description = "Service name: a DNS label (letters, digits and dashes, at most 63 characters, starting and ending with a letter or digit)."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$", var.name))
    error_message = "name must be a DNS label: 1 to 63 letters, digits or dashes, starting and ending with a letter or digit."
  }
}

variable "node" {
  description = "Catalog node to register on, created if missing: a DNS name (labels of letters, digits and dashes, separated by dots)."
  type        = string
  nullable    = false

  validation {
    condition     = length(var.node) <= 253 && can(regex("^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$", var.node))
    error_message = "node must be a DNS name: dot-separated labels of 1 to 63 letters, digits or dashes, each starting and ending with a letter or digit."
  }
}

variable "address" {
  description = "The node's address (an IP address or a host name)."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[^\\s]+$", var.address))
    error_message = "address must be a non-empty IP address or host name, without spaces."
  }
}

variable "port" {
  description = "Service port."
  type        = number
  nullable    = false

  validation {
    condition     = var.port == floor(var.port) && var.port >= 1 && var.port <= 65535
    error_message = "port must be a whole number from 1 to 65535."
  }
}

variable "protocol" {
  description = "Protocol the service speaks: `tcp`, `http`, `http2` or `grpc`. When set, the module also declares the service's `service-defaults` config entry with it; null leaves the protocol to whoever else declares it."
  type        = string
  default     = null

  validation {
    condition     = var.protocol == null ? true : contains(["tcp", "http", "http2", "grpc"], var.protocol)
    error_message = "protocol must be one of tcp, http, http2 or grpc, or null."
  }
}

variable "tags" {
  description = "Service tags."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for t in var.tags : length(trimspace(t)) > 0])
    error_message = "tags must not be empty strings."
  }
}

variable "sidecar_port" {
  description = "Public port of the sidecar proxy."
  type        = number
  default     = 21000
  nullable    = false

  validation {
    condition     = var.sidecar_port == floor(var.sidecar_port) && var.sidecar_port >= 1 && var.sidecar_port <= 65535
    error_message = "sidecar_port must be a whole number from 1 to 65535."
  }
}

variable "upstreams" {
  description = "Services this one calls through its sidecar, each on its own local port."
  type        = list(object({ name = string, local_port = number }))
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for u in var.upstreams : can(regex("^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$", u.name))])
    error_message = "Each upstream's name must be a service name: a DNS label of letters, digits and dashes."
  }

  validation {
    condition     = alltrue([for u in var.upstreams : u.local_port == floor(u.local_port) && u.local_port >= 1 && u.local_port <= 65535])
    error_message = "Each upstream's local_port must be a whole number from 1 to 65535."
  }

  validation {
    condition     = length(distinct([for u in var.upstreams : u.local_port])) == length(var.upstreams)
    error_message = "Two upstreams cannot share a local_port."
  }
}

variable "allowed_sources" {
  description = "Services allowed to call this one (an `allow` intention each); `*` allows every service."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for s in var.allowed_sources : s == "*" || can(regex("^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$", s))])
    error_message = "allowed_sources must hold service names (DNS labels of letters, digits and dashes) or \"*\"."
  }
}
