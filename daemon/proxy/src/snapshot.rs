//! The proxy snapshot: everything one sidecar needs, computed by the agent.
//!
//! The agent serves it as JSON with Consul-style PascalCase keys; the only
//! producer is our own agent, so keys are matched exactly.

use std::collections::BTreeMap;

use mesh_policy::{IntentionSet, Layer};
use serde::{Deserialize, Serialize};

/// Everything one sidecar needs: listeners, credentials, intentions, upstreams.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ProxySnapshot {
    /// ID of the proxy service instance this snapshot is for.
    #[serde(rename = "ProxyID")]
    pub proxy_id: String,
    /// Name of the destination service this sidecar fronts (a gateway: its own).
    pub service: String,
    /// Empty for a sidecar; `ingress-gateway` or `terminating-gateway`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// SPIFFE trust domain, e.g. `7f1c….consul`.
    pub trust_domain: String,
    /// Datacenter of this proxy.
    pub datacenter: String,
    /// The public (inbound, mTLS) listener.
    pub public: PublicListener,
    /// This proxy's leaf certificate; `None` until the CA has signed one.
    pub leaf: Option<Leaf>,
    /// Trust bundle: PEM roots, including cross-signed intermediates.
    pub roots: Vec<String>,
    /// Intentions whose destination is [`ProxySnapshot::service`].
    pub intentions: IntentionSet,
    /// Upstream (outbound) listeners.
    pub upstreams: Vec<Upstream>,
    /// A terminating gateway: the services outside the mesh it lets mesh
    /// services reach, chosen by the SNI callers send.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub linked: Vec<LinkedService>,
    /// Raft index the snapshot was computed at.
    pub index: u64,
}

/// A service outside the mesh behind a terminating gateway.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LinkedService {
    pub service: String,
    /// The SNI callers send for it (`<service>.default.<dc>.internal.<td>`).
    #[serde(rename = "SNI")]
    pub sni: String,
    /// Its healthy instances (their own addresses; no sidecar).
    pub endpoints: Vec<Endpoint>,
    /// Intentions whose destination is this service: the gateway enforces them.
    pub intentions: IntentionSet,
    /// The leaf the gateway presents as this service.
    pub leaf: Option<Leaf>,
    /// TLS to the service (files on the gateway's host): a CA bundle turns
    /// it on; a client certificate and key are presented if given.
    #[serde(rename = "CAFile")]
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
    /// The server name sent to the service (default: the instance address).
    #[serde(rename = "TLSServerName")]
    pub tls_server_name: String,
}

/// The public listener: where other sidecars dial us with mTLS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PublicListener {
    /// Address to bind; empty with a non-zero port means `0.0.0.0`, empty with port 0: no listener.
    pub bind_address: String,
    /// Port to bind; 0 picks a free port (see `ProxyHandle::bound`).
    pub bind_port: u16,
    /// Address of the local application (empty: `127.0.0.1`).
    pub local_service_address: String,
    /// Port of the local application.
    pub local_service_port: u16,
    /// `tcp` (L4 splice) or `http`, `http2`, `grpc` (L7, per-request permissions).
    pub protocol: Protocol,
}

/// Application protocol of the public listener.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Opaque TCP: authorize once per connection, then splice bytes.
    #[default]
    Tcp,
    /// HTTP/1.1 or h2 from peers, HTTP/1.1 to the app; permissions per request.
    Http,
    /// Like `http`, but h2 (prior knowledge) to the app.
    Http2,
    /// gRPC: h2 to the app, trailers preserved; permissions per request.
    Grpc,
}

impl Protocol {
    /// Whether requests are parsed and checked one by one.
    pub fn is_l7(self) -> bool {
        !matches!(self, Protocol::Tcp)
    }

    /// Where intentions are decided for this listener.
    pub fn layer(self) -> Layer {
        if self.is_l7() {
            Layer::L7
        } else {
            Layer::L4
        }
    }
}

/// A leaf certificate and its key, PEM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Leaf {
    /// Leaf certificate, optionally followed by intermediates.
    #[serde(rename = "CertPEM")]
    pub cert_pem: String,
    /// PKCS#8, SEC1 or PKCS#1 private key.
    #[serde(rename = "PrivateKeyPEM")]
    pub private_key_pem: String,
}

/// One upstream: a local plain-TCP listener that dials the destination with mTLS.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Upstream {
    /// Destination service name; also the upstream's key.
    pub destination_name: String,
    /// An ingress gateway's tcp listener (keyed `tcp:<port>`): the service
    /// it splices to.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub destination_service: String,
    /// Local address the app connects to (empty: `127.0.0.1`).
    pub local_bind_address: String,
    /// Local port; 0 picks a free port (see `ProxyHandle::bound`).
    pub local_bind_port: u16,
    /// Dial + handshake timeout per endpoint attempt (0: 5000 ms).
    pub connect_timeout_ms: u64,
    /// The destination's protocol (`service-defaults`): the built-in proxy
    /// splices bytes whatever it is; Envoy routes HTTP ones per request.
    pub protocol: Protocol,
    /// Healthy sidecars of the destination.
    pub endpoints: Vec<Endpoint>,
    /// The discovery chain, when routes or splits decide per request
    /// (http, http2, grpc); absent when every connection goes one way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<mesh_chain::CompiledChain>,
    /// With a chain: the healthy sidecars of each resolver's target (its
    /// failover's when it has none), by target ID.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub targets: BTreeMap<String, Vec<Endpoint>>,
    /// An ingress gateway's HTTP listener: the services it routes to, by
    /// the request's host.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<IngressRoute>,
    /// TLS on the listener, with this proxy's leaf (an ingress gateway's
    /// leaf carries the listener's host names as DNS SANs).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
    /// With [`Upstream::tls`]: a certificate and key (PEM files on the
    /// gateway's host) to present instead of the leaf.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tls_cert_file: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tls_key_file: String,
    /// How connections pick among [`Upstream::endpoints`] (the chain's
    /// default resolver's policy; none: round robin).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<mesh_chain::entries::LoadBalancer>,
    /// The calling service's limits for this upstream (0: none).
    #[serde(skip_serializing_if = "is_zero")]
    pub max_connections: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub max_concurrent_requests: u32,
    /// Passive health checks: an endpoint that fails this many times in a
    /// row is left out for a while.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier: Option<Outlier>,
}

impl Upstream {
    /// The service this upstream reaches (an ingress listener's, or its own name).
    pub fn service(&self) -> &str {
        if self.destination_service.is_empty() {
            &self.destination_name
        } else {
            &self.destination_service
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Outlier ejection, from service-defaults `PassiveHealthCheck`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Outlier {
    /// Consecutive failures (connect errors, 5xx answers) that eject.
    pub max_failures: u32,
    /// How long an ejected endpoint stays out.
    pub base_ejection_ms: u64,
    /// The most endpoints out at once, in percent (default 10, at least one).
    pub max_ejection_percent: u32,
}

/// One service behind an ingress gateway's HTTP listener.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct IngressRoute {
    /// Host names (lowercase, no port) this service answers; `*` for any.
    pub hosts: Vec<String>,
    pub service: String,
    /// As [`Upstream::endpoints`], [`Upstream::chain`], [`Upstream::targets`].
    pub endpoints: Vec<Endpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<mesh_chain::CompiledChain>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub targets: BTreeMap<String, Vec<Endpoint>>,
}

/// One destination sidecar and the identity it must prove.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Endpoint {
    /// IP address (or host name) of the sidecar's public listener.
    pub address: String,
    /// Port of the sidecar's public listener.
    pub port: u16,
    /// URI SAN the sidecar's certificate must carry.
    #[serde(rename = "SpiffeID")]
    pub spiffe_id: String,
    /// The server name to send: a terminating gateway picks the service
    /// by it (empty: none sent).
    #[serde(rename = "SNI", skip_serializing_if = "String::is_empty")]
    pub sni: String,
}

impl ProxySnapshot {
    /// Parses a snapshot from JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, crate::Error> {
        serde_json::from_slice(bytes).map_err(crate::Error::Snapshot)
    }

    /// The SPIFFE ID a sidecar of `service` carries in this snapshot's domain.
    pub fn spiffe_id_for(&self, service: &str) -> String {
        mesh_types::SpiffeId::service(&self.trust_domain, &self.datacenter, service).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_consul_style_json() {
        let json = r#"{
          "ProxyID": "web-sidecar-proxy", "Service": "web", "TrustDomain": "x.consul",
          "Datacenter": "dc1",
          "Public": {"BindAddress": "127.0.0.1", "BindPort": 21000,
                     "LocalServiceAddress": "127.0.0.1", "LocalServicePort": 8080, "Protocol": "http"},
          "Leaf": {"CertPEM": "c", "PrivateKeyPEM": "k"}, "Roots": ["r"],
          "Intentions": {"DefaultAllow": false, "Rules": [{"Source": "api",
             "Destination": "web",
             "Permissions": [{"Action": "deny", "HTTP": {"PathPrefix": "/admin",
                "Methods": ["POST"], "Header": [{"Name": "x-debug", "Present": true}]}}]}]},
          "Upstreams": [{"DestinationName": "db", "LocalBindAddress": "127.0.0.1",
             "LocalBindPort": 9191, "ConnectTimeoutMs": 500,
             "Endpoints": [{"Address": "10.0.0.1", "Port": 21000,
                            "SpiffeID": "spiffe://x.consul/ns/default/dc/dc1/svc/db"}]}],
          "Index": 42 }"#;
        let s = ProxySnapshot::from_json(json.as_bytes()).unwrap();
        assert_eq!(s.public.protocol, Protocol::Http);
        assert_eq!(
            s.intentions.rules[0].permissions[0].action,
            mesh_types::IntentionAction::Deny
        );
        assert_eq!(s.upstreams[0].endpoints[0].port, 21000);
        let back: ProxySnapshot =
            serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        assert_eq!(
            s.spiffe_id_for("db"),
            "spiffe://x.consul/ns/default/dc/dc1/svc/db"
        );
    }

    #[test]
    fn the_example_file_parses() {
        let s = ProxySnapshot::from_json(include_bytes!("../examples/snapshot.json")).unwrap();
        assert_eq!(s.public.protocol, Protocol::Http);
        assert_eq!(s.intentions.rules.len(), 2);
        assert_eq!(s.upstreams[0].destination_name, "db");
        assert_eq!(s.upstreams[0].endpoints[0].spiffe_id, s.spiffe_id_for("db"));
    }

    #[test]
    fn empty_object_is_a_default_snapshot() {
        let s = ProxySnapshot::from_json(b"{}").unwrap();
        assert!(s.leaf.is_none());
        assert!(s.intentions.default_allow);
    }
}
