# A client agent: runs beside services, forwards to the servers.
#   mesh agent -config-file examples/agent/client.hcl

datacenter = "dc1"
node_name  = "web-1"
data_dir   = "/var/lib/mesh"

bind_addr   = "0.0.0.0"
client_addr = "127.0.0.1"

retry_join = ["10.0.0.11", "10.0.0.12", "10.0.0.13"]

encrypt = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="

ports {
  # Clients need no server RPC port; gRPC serves the local sidecars.
  grpc = 8502
}
