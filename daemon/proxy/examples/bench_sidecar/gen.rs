//! Certificates and snapshots for a two-hop bench: sidecar "a" (client side)
//! with upstream "b", sidecar "b" fronting the backend.

use std::path::Path;

use mesh_proxy::{Endpoint, IntentionSet, Protocol, ProxySnapshot, PublicListener, Upstream};

use crate::pki::Ca;

const TD: &str = "bench.consul";
const DC: &str = "dc1";

/// Writes ca.pem, {a,b}.{crt,key,combined.pem} and mesh-{a,b}.json into `dir`.
///
/// With `l7`, hop B speaks `http` and its intention carries an L7 permission.
pub fn generate(
    dir: &Path,
    backend: u16,
    upstream: u16,
    public: u16,
    l7: bool,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let ca = Ca::new("bench root");
    std::fs::write(dir.join("ca.pem"), &ca.pem)?;
    let mut leaves = Vec::new();
    for svc in ["a", "b"] {
        let leaf = ca.leaf(TD, DC, svc);
        std::fs::write(dir.join(format!("{svc}.crt")), &leaf.cert_pem)?;
        std::fs::write(dir.join(format!("{svc}.key")), &leaf.private_key_pem)?;
        std::fs::write(
            dir.join(format!("{svc}.combined.pem")),
            format!("{}{}", leaf.cert_pem, leaf.private_key_pem),
        )?;
        leaves.push(leaf);
    }
    let base = |svc: &str| ProxySnapshot {
        proxy_id: format!("{svc}-sidecar-proxy"),
        service: svc.into(),
        trust_domain: TD.into(),
        datacenter: DC.into(),
        roots: vec![ca.pem.clone()],
        intentions: IntentionSet {
            default_allow: false,
            rules: vec![mesh_types::Intention {
                source: "a".into(),
                destination: "b".into(),
                action: Some(mesh_types::IntentionAction::Allow),
                ..Default::default()
            }],
        },
        index: 1,
        ..Default::default()
    };
    let mut a = base("a");
    a.leaf = Some(leaves[0].clone());
    a.upstreams = vec![Upstream {
        destination_name: "b".into(),
        local_bind_address: "127.0.0.1".into(),
        local_bind_port: upstream,
        connect_timeout_ms: 1000,
        protocol: Default::default(),
        endpoints: vec![Endpoint {
            address: "127.0.0.1".into(),
            port: public,
            spiffe_id: mesh_types::SpiffeId::service(TD, DC, "b").to_string(),
            ..Default::default()
        }],
        ..Default::default()
    }];
    let mut b = base("b");
    b.leaf = Some(leaves[1].clone());
    b.public = PublicListener {
        bind_address: "127.0.0.1".into(),
        bind_port: public,
        local_service_address: "127.0.0.1".into(),
        local_service_port: backend,
        protocol: if l7 { Protocol::Http } else { Protocol::Tcp },
    };
    if l7 {
        b.intentions.rules[0].action = None;
        b.intentions.rules[0].permissions = vec![mesh_types::Permission {
            action: mesh_types::IntentionAction::Allow,
            http: Some(mesh_types::HttpMatch {
                path_prefix: Some("/".into()),
                methods: vec!["GET".into()],
                ..Default::default()
            }),
        }];
    }
    std::fs::write(dir.join("mesh-a.json"), serde_json::to_vec_pretty(&a)?)?;
    std::fs::write(dir.join("mesh-b.json"), serde_json::to_vec_pretty(&b)?)?;
    Ok(())
}
