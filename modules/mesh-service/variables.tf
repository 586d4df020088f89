variable "name" {
  description = "Service name."
  type        = string
}

variable "node" {
  description = "Catalog node to register on."
  type        = string
}

variable "address" {
  description = "The node's address."
  type        = string
}

variable "port" {
  description = "Service port."
  type        = number
}

variable "tags" {
  description = "Service tags."
  type        = list(string)
  default     = []
}

variable "sidecar_port" {
  description = "Public port of the sidecar proxy."
  type        = number
  default     = 21000
}

variable "upstreams" {
  description = "Services this one calls, each on a local port."
  type        = list(object({ name = string, local_port = number }))
  default     = []
}

variable "allowed_sources" {
  description = "Services allowed to call this one."
  type        = list(string)
  default     = []
}
