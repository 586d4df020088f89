output "pools" {
  description = "Each service's members, as address:port"
  value       = local.pools
}
