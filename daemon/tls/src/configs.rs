//! rustls configs for one surface, with Consul's rules:
//! - the listener presents the agent's certificate; `verify_incoming`
//!   requires a caller certificate from the CA, otherwise one is checked
//!   when offered (so a caller's identity is known when it has one);
//! - a dialer checks the peer's chain against the CA, and the name
//!   `server.<dc>.<domain>` only with `verify_server_hostname`; it offers
//!   the agent's certificate as its client certificate.

use std::sync::Arc;

use mesh_config::{TlsSurface, TlsVersion};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::SingleCertAndKey;
use rustls::{ClientConfig, ServerConfig, SupportedProtocolVersion};

use crate::material::Material;
use crate::verifier::NameBlind;
use crate::TlsError;

/// What a surface has beyond its files: a certificate assigned at run
/// time (auto_encrypt), CA roots its callers may also be signed by (the
/// Connect CA's, on servers that sign for client agents), and whether
/// callers without a certificate get through the handshake (to ask for
/// one; the RPC layer lets them do nothing else).
#[derive(Clone, Default)]
pub struct Extra {
    pub identity: Option<Arc<rustls::sign::CertifiedKey>>,
    pub caller_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    pub unauthenticated_callers: bool,
}

/// The configs built from one reading of a surface's files.
pub struct Configs {
    /// For the surface's listener; present when a certificate is configured.
    pub server: Option<Arc<ServerConfig>>,
    /// For dialing servers; present when a CA is configured. Checks the
    /// server name only with `verify_server_hostname`.
    pub client: Option<Arc<ClientConfig>>,
    /// For dialing a server that must prove it is one: the chain and the
    /// server name, always. Present when a CA is configured.
    pub strict_client: Option<Arc<ClientConfig>>,
    /// The server name servers are certified for.
    pub server_name: String,
    pub(crate) digest: u64,
}

impl Configs {
    pub(crate) fn build(
        surface: &TlsSurface,
        material: &Material,
        server_name: &str,
        extra: &Extra,
    ) -> Result<Configs, TlsError> {
        let fail = |field: &str, reason: String| TlsError {
            key: format!("{}.{field}", surface.key),
            path: String::new(),
            reason,
        };
        let provider = Arc::new(provider(surface).map_err(|e| fail("tls_cipher_suites", e))?);
        let versions = versions(surface.min_version);
        let identity = material.identity.clone().or_else(|| extra.identity.clone());
        let server = match &identity {
            Some(identity) => {
                let builder = ServerConfig::builder_with_provider(provider.clone())
                    .with_protocol_versions(versions)
                    .map_err(|e| fail("tls_min_version", e.to_string()))?;
                let callers = match (&material.roots, extra.caller_roots.is_empty()) {
                    (Some(roots), true) => Some(roots.clone()),
                    (roots, _) => {
                        let mut all = roots
                            .as_deref()
                            .cloned()
                            .unwrap_or_else(rustls::RootCertStore::empty);
                        for root in &extra.caller_roots {
                            all.add(root.clone())
                                .map_err(|e| fail("ca_file", format!("a Connect CA root: {e}")))?;
                        }
                        Some(Arc::new(all))
                    }
                };
                let builder = match callers {
                    Some(roots) => {
                        let verifier =
                            WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
                        let verifier = if surface.verify_incoming && !extra.unauthenticated_callers
                        {
                            verifier
                        } else {
                            verifier.allow_unauthenticated()
                        };
                        let verifier = verifier
                            .build()
                            .map_err(|e| fail("ca_file", format!("cannot check callers: {e}")))?;
                        builder.with_client_cert_verifier(verifier)
                    }
                    None => builder.with_no_client_auth(),
                };
                let config =
                    builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(identity.clone())));
                Some(Arc::new(config))
            }
            None => None,
        };
        let dialer = |check_name: bool| -> Result<Option<Arc<ClientConfig>>, TlsError> {
            let Some(roots) = &material.roots else {
                return Ok(None);
            };
            let webpki =
                WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                    .build()
                    .map_err(|e| fail("ca_file", format!("cannot check servers: {e}")))?;
            let builder = ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(versions)
                .map_err(|e| fail("tls_min_version", e.to_string()))?;
            let builder = if check_name {
                builder.with_webpki_verifier(webpki)
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(NameBlind(webpki)))
            };
            let config = match &identity {
                Some(identity) => builder
                    .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(identity.clone()))),
                None => builder.with_no_client_auth(),
            };
            Ok(Some(Arc::new(config)))
        };
        Ok(Configs {
            server,
            client: dialer(surface.verify_server_hostname)?,
            strict_client: dialer(true)?,
            server_name: server_name.to_string(),
            digest: material.digest(),
        })
    }
}

const TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

fn versions(min: TlsVersion) -> &'static [&'static SupportedProtocolVersion] {
    match min {
        TlsVersion::Tls12 => rustls::ALL_VERSIONS,
        TlsVersion::Tls13 => TLS13_ONLY,
    }
}

/// ring's suites, TLS 1.2 ones narrowed to `tls_cipher_suites` when set.
fn provider(surface: &TlsSurface) -> Result<CryptoProvider, String> {
    let mut provider = rustls::crypto::ring::default_provider();
    if surface.cipher_suites.is_empty() {
        return Ok(provider);
    }
    let known: Vec<String> = provider
        .cipher_suites
        .iter()
        .filter(|s| s.version() == &rustls::version::TLS12)
        .map(|s| format!("{:?}", s.suite()))
        .collect();
    for name in &surface.cipher_suites {
        if !known.contains(name) {
            return Err(format!(
                "{name:?} is not a supported TLS 1.2 cipher suite; supported: {}",
                known.join(", ")
            ));
        }
    }
    provider.cipher_suites.retain(|s| {
        s.version() == &rustls::version::TLS13
            || surface.cipher_suites.contains(&format!("{:?}", s.suite()))
    });
    Ok(provider)
}
