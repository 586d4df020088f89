//! auto_encrypt, as Consul's: a server with `auto_encrypt { allow_tls =
//! true }` signs client agents' RPC certificates with the Connect CA (the
//! client proves itself with its agent token, which needs `node:write` on
//! its node), and trusts the Connect CA's roots for its callers; a client
//! agent with `auto_encrypt { tls = true }`, holding only the servers' CA,
//! asks for its certificate at start, renews it at half its life and as
//! soon as the active root changes.

use std::sync::Arc;
use std::time::Duration;

use mesh_raft::{AutoEncryptReply, AutoEncryptRequest};
use mesh_tls::SurfaceTls;
use rustls::pki_types::pem::PemObject;
use tokio::sync::watch;

use crate::node::Node;
use crate::stop::Stop;

/// The most bytes a CSR may have.
const MAX_CSR_BYTES: usize = 16 << 10;
/// How long an agent certificate lives (Consul's default leaf TTL).
const AGENT_CERT_TTL: Duration = Duration::from_secs(72 * 3600);
/// How often a client checks the active root (and servers their roots).
const POLL: Duration = Duration::from_secs(5);
/// How soon a client retries after a failure.
const RETRY: Duration = Duration::from_secs(1);

/// The names a client agent's certificate carries (the server's choice).
fn client_names(datacenter: &str, domain: &str) -> Vec<String> {
    let domain = domain.trim_end_matches('.');
    vec![
        format!("client.{datacenter}.{domain}"),
        "localhost".to_string(),
    ]
}

/// On a server: sign `request` for the client that sent it.
pub(crate) async fn sign(
    node: Arc<Node>,
    token: Option<String>,
    request: AutoEncryptRequest,
) -> Result<AutoEncryptReply, String> {
    let settings = crate::node::acl_settings(&node.live.borrow().acl, &node.config.datacenter);
    if settings.enabled {
        let allowed = node.state.read(|s| {
            let resolved = mesh_api::resolve_in(s, &settings, token.as_deref())?;
            let authz = mesh_acl::Authorizer::from_rule_texts(
                resolved.management,
                &resolved.rules,
                settings.default_allow,
            );
            Some(authz.allows(
                mesh_acl::Resource::Node,
                &request.node,
                mesh_acl::Access::Write,
            ))
        });
        if allowed != Some(true) {
            return Err(format!(
                "Permission denied: auto_encrypt needs a token with node:write on {:?}",
                request.node
            ));
        }
    }
    let (signer, stored) = node.ca.ca_signer().map_err(|e| e.to_string())?;
    let mut reply = AutoEncryptReply {
        roots_pem: stored.state.trust_bundle(),
        active_root_id: stored
            .state
            .active()
            .map(|r| r.id.clone())
            .unwrap_or_default(),
        trust_domain: stored.state.trust_domain.clone(),
        ..Default::default()
    };
    let Some(csr) = request.csr else {
        return Ok(reply);
    };
    if csr.len() > MAX_CSR_BYTES {
        return Err(format!(
            "the CSR is over {MAX_CSR_BYTES} bytes (MAX_CSR_BYTES)"
        ));
    }
    node.ca
        .csr_permit(&stored)
        .await
        .map_err(|e| e.to_string())?;
    let mut leaf = mesh_ca::LeafRequest::new(
        request.node.clone(),
        node.config.datacenter.clone(),
        AGENT_CERT_TTL,
    );
    leaf.agent_id = Some(request.node_id.clone());
    // The server names the client; the CSR may ask for no more.
    leaf.dns_sans = client_names(&node.config.datacenter, &node.config.dns.domain);
    let signed = signer
        .sign_csr(&csr, &leaf)
        .map_err(|e| format!("signing the CSR of {:?}: {e}", request.node))?;
    tracing::info!(node = %request.node, "auto_encrypt: signed a client agent's certificate");
    reply.cert_pem = signed.cert_pem;
    reply.valid_before = signed.valid_before;
    Ok(reply)
}

/// On a server with `allow_tls`: its RPC port (and HTTPS API, where client
/// agents call too) trusts the Connect CA's roots for callers, kept in step
/// with rotations. (The RPC port also lets callers without a certificate
/// through the handshake, to ask for one; see `spawn_server`.)
pub(crate) async fn serve_roots(
    node: Arc<Node>,
    surfaces: Vec<Arc<SurfaceTls>>,
    mut stop: watch::Receiver<Stop>,
) -> anyhow::Result<()> {
    let mut current: Vec<String> = Vec::new();
    loop {
        let roots = node
            .ca
            .stored_ca()
            .map(|(s, _)| s.state.trust_bundle())
            .unwrap_or_default();
        if roots != current {
            let ders: Vec<_> = roots
                .iter()
                .flat_map(|pem| rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()))
                .filter_map(Result::ok)
                .collect();
            let updated = surfaces
                .iter()
                .try_for_each(|tls| tls.update_extra(|e| e.caller_roots = ders.clone()));
            match updated {
                Ok(()) => {
                    tracing::info!(
                        roots = roots.len(),
                        "auto_encrypt: RPC callers may present Connect CA certificates"
                    );
                    current = roots;
                }
                Err(e) => tracing::warn!(error = %e, "auto_encrypt: trusting the Connect CA roots"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.wait_for(|s| *s != Stop::Running) => return Ok(()),
        }
    }
}

/// What a client holds: the root that signed it and when it is due.
struct Held {
    root: String,
    renew_at: i64,
}

/// On a client agent with `auto_encrypt { tls = true }`: get, renew and
/// re-get on rotation the certificate the agent presents to servers.
pub(crate) async fn client(
    node: Arc<Node>,
    network: mesh_raft::Network,
    surfaces: Vec<Arc<SurfaceTls>>,
    mut stop: watch::Receiver<Stop>,
) -> anyhow::Result<()> {
    let mut held: Option<Held> = None;
    let mut failures = 0u32;
    loop {
        let wait = match step(&node, &network, &surfaces, &mut held).await {
            Ok(()) => {
                failures = 0;
                POLL
            }
            Err(why) => {
                failures += 1;
                // The first failures are the normal wait for a server.
                if failures == 10 || failures.is_multiple_of(60) {
                    tracing::warn!(%why, "auto_encrypt: no certificate from a server yet");
                }
                RETRY
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s != Stop::Running) => return Ok(()),
        }
    }
}

async fn step(
    node: &Node,
    network: &mesh_raft::Network,
    surfaces: &[Arc<SurfaceTls>],
    held: &mut Option<Held>,
) -> Result<(), String> {
    let server = node
        .writes
        .server_rpc_addrs()
        .into_iter()
        .next()
        .ok_or("no known servers")?;
    let token = node.live.borrow().acl.own_token();
    let mut request = AutoEncryptRequest {
        node: node.config.node_name.clone(),
        node_id: node.node_id.to_string(),
        csr: None,
    };
    let roots = network
        .auto_encrypt_sign(&server, token.as_deref(), &request)
        .await?;
    let now = mesh_ca::unix_now();
    if let Some(h) = held {
        if h.root == roots.active_root_id && now < h.renew_at {
            return Ok(());
        }
    }
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let names = client_names(&node.config.datacenter, &node.config.dns.domain);
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| e.to_string())?;
    let uri = format!(
        "spiffe://{}/agent/client/dc/{}/id/{}",
        roots.trust_domain, node.config.datacenter, request.node_id
    );
    params.subject_alt_names.push(rcgen::SanType::URI(
        uri.as_str().try_into().map_err(|e| format!("{e}"))?,
    ));
    let csr = params
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .map_err(|e| e.to_string())?;
    request.csr = Some(csr);
    let signed = network
        .auto_encrypt_sign(&server, token.as_deref(), &request)
        .await?;
    let identity = mesh_tls::identity_from_pem(&signed.cert_pem, &key.serialize_pem())?;
    for tls in surfaces {
        tls.update_extra(|e| e.identity = Some(identity.clone()))
            .map_err(|e| e.to_string())?;
    }
    // Connections made without a certificate are made again with it.
    network.reset_connections();
    let life = signed.valid_before - now;
    *held = Some(Held {
        root: signed.active_root_id.clone(),
        renew_at: now + life / 2,
    });
    tracing::info!(%server, root = %signed.active_root_id, "auto_encrypt: got this agent's certificate");
    Ok(())
}
