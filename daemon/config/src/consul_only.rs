//! Keys of Consul's agent config that mesh does not implement. A config
//! written for Consul still loads: each such key is dropped with one
//! warning that names it and where it is. Keys Consul itself would refuse
//! stay errors (with a did-you-mean), so typos are still caught.

use serde_json::Value;

use crate::error::Pos;
use crate::spans::Spans;

/// Consul keys with no effect in mesh, as dotted paths from the top.
/// Facts from Consul's agent configuration reference (1.21).
pub(crate) const CONSUL_ONLY_KEYS: &[&str] = &[
    "advertise_addr_ipv4",
    "advertise_addr_ipv6",
    "advertise_addr_wan",
    "advertise_addr_wan_ipv4",
    "advertise_addr_wan_ipv6",
    "advertise_reconnect_timeout",
    "audit",
    "auto_config",
    "auto_reload_config",
    "check",
    "check_output_max_size",
    "check_update_interval",
    "checks",
    "cloud",
    "default_query_time",
    "disable_anonymous_signature",
    "disable_coordinates",
    "disable_host_node_id",
    "disable_http_unprintable_char_filter",
    "disable_keyring_file",
    "disable_remote_exec",
    "disable_update_check",
    "discard_check_output",
    "discovery_max_stale",
    "enable_acl_replication",
    "enable_agent_tls_for_checks",
    "enable_central_service_config",
    "enable_debug",
    "enable_local_script_checks",
    "experiments",
    "http_config",
    "leave_on_terminate",
    "license_path",
    "locality",
    "max_query_time",
    "node_id",
    "node_meta",
    "peering",
    "pid_file",
    "primary_gateways",
    "primary_gateways_interval",
    "protocol",
    "raft_boltdb",
    "raft_logstore",
    "raft_protocol",
    "raft_snapshot_interval",
    "raft_snapshot_threshold",
    "raft_trailing_logs",
    "read_replica",
    "rejoin_after_leave",
    "reconnect_timeout",
    "reconnect_timeout_wan",
    "reporting",
    "retry_interval_wan",
    "retry_join_wan",
    "retry_max",
    "retry_max_wan",
    "rpc",
    "segment",
    "segments",
    "serf_lan",
    "serf_lan_allowed_cidrs",
    "serf_wan",
    "serf_wan_allowed_cidrs",
    "server_name",
    "server_rejoin_age_max",
    "session_ttl_min",
    "skip_leave_on_interrupt",
    "start_join",
    "start_join_wan",
    "translate_wan_addrs",
    "unix_sockets",
    "verify_incoming_https",
    "verify_incoming_rpc",
    "xds",
    "ports.serf_wan",
    "ports.sidecar_min_port",
    "ports.sidecar_max_port",
    "ports.expose_min_port",
    "ports.expose_max_port",
    "addresses.grpc_tls",
    "addresses.https",
    "dns_config.a_record_limit",
    "dns_config.cache_max_age",
    "dns_config.disable_compression",
    "dns_config.enable_additional_node_meta_txt",
    "dns_config.max_stale",
    "dns_config.prefer_namespace",
    "dns_config.recursor_strategy",
    "dns_config.recursor_timeout",
    "dns_config.soa",
    "dns_config.use_cache",
    "performance.leave_drain_time",
    "performance.rpc_hold_timeout",
    "limits.http_max_conns_per_client_ip",
    "limits.request_limits",
    "limits.rpc_client_timeout",
    "limits.rpc_handshake_timeout",
    "connect.enable_mesh_gateway_wan_federation",
    "acl.enable_key_list_policy",
    "acl.enable_token_persistence",
    "acl.enable_token_replication",
    "acl.down_policy",
    "acl.policy_ttl",
    "acl.role_ttl",
    "acl.token_ttl",
    "acl.msp_disable_bootstrap",
    "acl.tokens.replication",
    "acl.tokens.config_file_service_registration",
    "acl.tokens.dns",
    "acl.tokens.agent_recovery",
    "acl.tokens.agent_master",
    "tls.defaults.use_auto_cert",
    "tls.grpc.use_auto_cert",
];

/// Removes every Consul-only key present in `value`, returning one
/// warning per key with its position (`file:line:col`).
pub(crate) fn strip(value: &mut Value, spans: &Spans, file: &std::path::Path) -> Vec<String> {
    let mut notes = Vec::new();
    for path in CONSUL_ONLY_KEYS {
        let (parent, key) = match path.rsplit_once('.') {
            Some((parent, key)) => (Some(parent), key),
            None => (None, *path),
        };
        let mut node = Some(&mut *value);
        if let Some(parent) = parent {
            for part in parent.split('.') {
                node = node.and_then(|n| n.get_mut(part)).filter(|n| n.is_object());
            }
        }
        let Some(map) = node.and_then(Value::as_object_mut) else {
            continue;
        };
        if map.remove(key).is_some() {
            let pos = spans
                .nearest(path)
                .map_or(Pos { line: 1, col: 1 }, |s| s.key);
            notes.push(format!(
                "{}:{}:{}: config key {path} is a Consul setting mesh does not implement; it is ignored",
                file.display(),
                pos.line,
                pos.col
            ));
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::load::{parse_str, Format};

    #[test]
    fn consul_only_keys_are_dropped_with_a_warning_naming_them() {
        let text = "datacenter = \"dc1\"\nenable_local_script_checks = true\nports {\n  http = 8500\n  serf_wan = 8302\n}\nleave_on_terminate = true\n";
        let raw = parse_str(text, Format::Hcl, Path::new("c.hcl")).unwrap();
        assert_eq!(raw.datacenter.as_deref(), Some("dc1"));
        assert_eq!(raw.ports.as_ref().and_then(|p| p.http), Some(8500));
        assert_eq!(raw.ignored.len(), 3, "{:?}", raw.ignored);
        assert!(
            raw.ignored
                .iter()
                .any(|n| n.starts_with("c.hcl:7:1: config key leave_on_terminate")),
            "{:?}",
            raw.ignored
        );
        assert!(raw
            .ignored
            .iter()
            .any(|n| n.starts_with("c.hcl:2:1: config key enable_local_script_checks")));
        assert!(raw
            .ignored
            .iter()
            .any(|n| n.starts_with("c.hcl:5:3: config key ports.serf_wan")));
    }

    #[test]
    fn a_typo_is_still_an_error() {
        let err = parse_str(
            "enable_local_script_check = true\n",
            Format::Hcl,
            Path::new("c.hcl"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("c.hcl:1:1") && err.contains("did you mean `enable_local_script_checks`"),
            "{err}"
        );
    }
}
