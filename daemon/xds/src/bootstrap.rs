//! The Envoy bootstrap `mesh connect envoy` writes: who the proxy is, the
//! static `local_agent` cluster (the agent's gRPC port), ADS for
//! everything else, the admin listener and, when asked, a Prometheus
//! listener.

use serde_json::{json, Value};

/// What a bootstrap is made from.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// The proxy's service ID (Envoy's `node.id`).
    pub proxy_id: String,
    /// The proxied service's name (Envoy's `node.cluster`).
    pub service: String,
    /// The agent's gRPC address.
    pub grpc_host: String,
    pub grpc_port: u16,
    /// Sent as `x-consul-token` on the ADS stream.
    pub token: Option<String>,
    pub admin_host: String,
    pub admin_port: u16,
    /// `host:port` of a listener serving `/metrics` in Prometheus format.
    pub prometheus: Option<(String, u16)>,
    /// Incremental xDS (the default) or state of the world.
    pub delta: bool,
    /// Reach the agent's gRPC TLS port (`ports.grpc_tls`) with these.
    pub grpc_tls: Option<GrpcTls>,
}

/// How Envoy checks the agent's gRPC TLS port, and the certificate it
/// shows when the port verifies callers (`tls.grpc.verify_incoming`).
#[derive(Debug, Clone)]
pub struct GrpcTls {
    /// PEM file of the CA that signed the agent's certificate.
    pub ca_file: String,
    /// Certificate and key files.
    pub client_cert: Option<(String, String)>,
}

impl GrpcTls {
    fn transport_socket(&self) -> Value {
        let mut common = json!({
            "validation_context": {"trusted_ca": {"filename": self.ca_file}},
            "alpn_protocols": ["h2"],
        });
        if let Some((cert, key)) = &self.client_cert {
            common["tls_certificates"] = json!([{
                "certificate_chain": {"filename": cert},
                "private_key": {"filename": key},
            }]);
        }
        json!({
            "name": "tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "common_tls_context": common,
            },
        })
    }
}

fn socket(host: &str, port: u16) -> Value {
    json!({"socket_address": {"address": host, "port_value": port}})
}

fn static_cluster(name: &str, host: &str, port: u16, http2: bool) -> Value {
    let mut cluster = json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket(host, port)}}]}],
        },
    });
    if http2 {
        cluster["typed_extension_protocol_options"] = json!({
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        });
    }
    cluster
}

impl Bootstrap {
    /// The bootstrap as Envoy reads it (JSON).
    pub fn to_json(&self) -> Value {
        let ads = json!({"ads": {}, "resource_api_version": "V3"});
        let mut grpc_service = json!({"envoy_grpc": {"cluster_name": "local_agent"}});
        if let Some(token) = &self.token {
            grpc_service["initial_metadata"] = json!([{"key": "x-consul-token", "value": token}]);
        }
        let mut agent = static_cluster("local_agent", &self.grpc_host, self.grpc_port, true);
        if let Some(tls) = &self.grpc_tls {
            agent["transport_socket"] = tls.transport_socket();
        }
        let mut clusters = vec![agent];
        let mut listeners = vec![];
        if let Some((host, port)) = &self.prometheus {
            clusters.push(static_cluster(
                "self_admin",
                &self.admin_host,
                self.admin_port,
                false,
            ));
            listeners.push(json!({
                "name": "envoy_prometheus_metrics_listener",
                "address": socket(host, *port),
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "envoy_prometheus_metrics",
                        "codec_type": "HTTP1",
                        "route_config": {"name": "self_admin_route", "virtual_hosts": [{
                            "name": "self_admin", "domains": ["*"],
                            "routes": [{"match": {"path": "/metrics"},
                                        "route": {"cluster": "self_admin", "prefix_rewrite": "/stats/prometheus"}}],
                        }]},
                        "http_filters": [{"name": "envoy.filters.http.router",
                            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
                    },
                }]}],
            }));
        }
        json!({
            "admin": {"address": socket(&self.admin_host, self.admin_port)},
            "node": {
                "id": self.proxy_id,
                "cluster": self.service,
                "metadata": {"namespace": "default", "partition": "default"},
            },
            "static_resources": {"clusters": clusters, "listeners": listeners},
            "dynamic_resources": {
                "lds_config": ads,
                "cds_config": ads,
                "ads_config": {
                    "api_type": if self.delta { "DELTA_GRPC" } else { "GRPC" },
                    "transport_api_version": "V3",
                    "grpc_services": [grpc_service],
                },
            },
        })
    }
}

/// The bootstrap a proxyless gRPC client reads (`GRPC_XDS_BOOTSTRAP`):
/// the agent's xDS server, plaintext as the port is, and who the client is
/// (its `node.id` must not be a proxy registered with the agent).
pub fn grpc_bootstrap(node_id: &str, grpc_host: &str, grpc_port: u16) -> Value {
    let host = if grpc_host.contains(':') {
        format!("[{grpc_host}]")
    } else {
        grpc_host.to_string()
    };
    json!({
        "xds_servers": [{
            "server_uri": format!("{host}:{grpc_port}"),
            "channel_creds": [{"type": "insecure"}],
            "server_features": ["xds_v3"],
        }],
        "node": {"id": node_id, "cluster": node_id, "locality": {}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Bootstrap {
        Bootstrap {
            proxy_id: "web-sidecar-proxy".into(),
            service: "web".into(),
            grpc_host: "127.0.0.1".into(),
            grpc_port: 8502,
            token: Some("secret".into()),
            admin_host: "127.0.0.1".into(),
            admin_port: 19000,
            prometheus: Some(("0.0.0.0".into(), 9102)),
            delta: true,
            grpc_tls: None,
        }
    }

    #[test]
    fn names_the_proxy_and_points_ads_at_the_agent() {
        let b = sample().to_json();
        assert_eq!(b["node"]["id"], "web-sidecar-proxy");
        assert_eq!(b["node"]["cluster"], "web");
        let agent = &b["static_resources"]["clusters"][0];
        assert_eq!(agent["name"], "local_agent");
        assert_eq!(
            agent["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                ["socket_address"]["port_value"],
            8502
        );
        let ads = &b["dynamic_resources"]["ads_config"];
        assert_eq!(ads["api_type"], "DELTA_GRPC");
        assert_eq!(
            ads["grpc_services"][0]["initial_metadata"][0],
            json!({"key": "x-consul-token", "value": "secret"})
        );
        assert_eq!(b["dynamic_resources"]["lds_config"]["ads"], json!({}));
    }

    #[test]
    fn prometheus_is_a_listener_onto_the_admin_stats() {
        let b = sample().to_json();
        let l = &b["static_resources"]["listeners"][0];
        assert_eq!(l["address"]["socket_address"]["port_value"], 9102);
        let mut none = sample();
        none.prometheus = None;
        none.token = None;
        let b = none.to_json();
        assert_eq!(b["static_resources"]["listeners"], json!([]));
        assert!(b["dynamic_resources"]["ads_config"]["grpc_services"][0]
            .get("initial_metadata")
            .is_none());
    }

    #[test]
    fn a_grpc_bootstrap_names_the_server_and_the_client() {
        let b = grpc_bootstrap("billing-batch", "::1", 8502);
        assert_eq!(b["xds_servers"][0]["server_uri"], "[::1]:8502");
        assert_eq!(b["xds_servers"][0]["channel_creds"][0]["type"], "insecure");
        assert_eq!(b["node"]["id"], "billing-batch");
    }

    #[test]
    fn the_agent_cluster_speaks_tls_when_asked() {
        let mut b = sample();
        assert!(b.to_json()["static_resources"]["clusters"][0]
            .get("transport_socket")
            .is_none());
        b.grpc_tls = Some(GrpcTls {
            ca_file: "/etc/mesh/ca.pem".into(),
            client_cert: Some(("/c.pem".into(), "/k.pem".into())),
        });
        let json = b.to_json();
        let tls = &json["static_resources"]["clusters"][0]["transport_socket"]["typed_config"];
        let common = &tls["common_tls_context"];
        assert_eq!(
            common["validation_context"]["trusted_ca"]["filename"],
            "/etc/mesh/ca.pem"
        );
        assert_eq!(
            common["tls_certificates"][0]["private_key"]["filename"],
            "/k.pem"
        );
    }
}
