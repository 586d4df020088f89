//! Where a sidecar's admin listener goes, from its registration's proxy config.

use std::net::SocketAddr;

/// Proxy config keys naming the admin listener: ours first, then Consul's
/// key for Envoy's metrics listener, so existing registrations keep working.
pub const ADMIN_KEYS: [&str; 2] = ["admin_bind_addr", "envoy_prometheus_bind_addr"];

/// The admin address a proxy config (the `Proxy.Config` object) asks for.
///
/// `Ok(None)` when no key is set; `Err` says which key holds what instead of
/// `HOST:PORT`.
pub fn admin_bind_addr(config: &serde_json::Value) -> Result<Option<SocketAddr>, String> {
    let Some((key, value)) = ADMIN_KEYS
        .iter()
        .find_map(|k| config.get(*k).map(|v| (*k, v)))
    else {
        return Ok(None);
    };
    match value.as_str().map(str::parse::<SocketAddr>) {
        Some(Ok(addr)) => Ok(Some(addr)),
        _ => Err(format!(
            "proxy config {key} = {value}: expected \"HOST:PORT\""
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_admin_address_comes_from_either_key() {
        let addr = |v| admin_bind_addr(&v);
        assert_eq!(
            addr(json!({"admin_bind_addr": "127.0.0.1:19000"})),
            Ok(Some("127.0.0.1:19000".parse().unwrap()))
        );
        assert_eq!(
            addr(json!({"envoy_prometheus_bind_addr": "0.0.0.0:9102"})),
            Ok(Some("0.0.0.0:9102".parse().unwrap()))
        );
        assert_eq!(
            addr(
                json!({"admin_bind_addr": "127.0.0.1:1", "envoy_prometheus_bind_addr": "127.0.0.1:2"})
            ),
            Ok(Some("127.0.0.1:1".parse().unwrap()))
        );
        assert_eq!(addr(json!({})), Ok(None));
        assert_eq!(addr(json!(null)), Ok(None));
    }

    #[test]
    fn a_bad_value_says_which_key_and_what() {
        assert_eq!(
            admin_bind_addr(&json!({"admin_bind_addr": "localhost"})),
            Err("proxy config admin_bind_addr = \"localhost\": expected \"HOST:PORT\"".into())
        );
        assert!(
            admin_bind_addr(&json!({"envoy_prometheus_bind_addr": 9102}))
                .unwrap_err()
                .contains("envoy_prometheus_bind_addr = 9102")
        );
    }
}
