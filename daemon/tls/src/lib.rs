//! mesh-tls: the agent's own TLS (not the Connect CA's).
//!
//! A [`SurfaceTls`] holds one surface's material (the server RPC port, the
//! HTTPS API) loaded from the files the config names, checked at load (the
//! key matches the certificate, the CA parses), and the rustls configs
//! built from it with Consul's `verify_*` rules. `reload` re-reads the
//! files and keeps the last good material when they are bad. `generate`
//! writes the CA and certificates `mesh tls` creates.
#![forbid(unsafe_code)]

mod configs;
pub mod generate;
mod material;
mod verifier;

use std::sync::Arc;

use mesh_config::TlsSurface;
use parking_lot::RwLock;

pub use configs::{Configs, Extra};
pub use material::Material;

/// A TLS file that cannot be used, naming the key and the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} {path}: {reason}")]
pub struct TlsError {
    /// The config key (`tls.internal_rpc.cert_file`).
    pub key: String,
    /// The file (or directory) it names.
    pub path: String,
    pub reason: String,
}

/// The name every server's certificate carries: `server.<dc>.<domain>`.
pub fn server_name(datacenter: &str, domain: &str) -> String {
    format!("server.{datacenter}.{}", domain.trim_end_matches('.'))
}

/// Whether `cert` (DER) is valid for the DNS name `name`.
pub fn certificate_names(cert: &[u8], name: &str) -> bool {
    let der = rustls::pki_types::CertificateDer::from(cert);
    let Ok(cert) = webpki::EndEntityCert::try_from(&der) else {
        return false;
    };
    let Ok(name) = rustls::pki_types::ServerName::try_from(name) else {
        return false;
    };
    cert.verify_is_valid_for_subject_name(&name).is_ok()
}

/// One surface's TLS, reloadable: the settings, and the configs built
/// from the files as last read successfully (and any extras set at run time).
pub struct SurfaceTls {
    surface: TlsSurface,
    server_name: String,
    state: RwLock<State>,
}

struct State {
    material: Arc<Material>,
    extra: Extra,
    configs: Arc<Configs>,
}

impl SurfaceTls {
    /// Loads `surface`'s files; `server_name` is what servers must be
    /// certified for (`server.<dc>.<domain>`).
    pub fn load(surface: &TlsSurface, server_name: &str) -> Result<SurfaceTls, TlsError> {
        let material = Arc::new(Material::load(surface)?);
        let extra = Extra::default();
        let configs = Configs::build(surface, &material, server_name, &extra)?;
        Ok(SurfaceTls {
            surface: surface.clone(),
            server_name: server_name.to_string(),
            state: RwLock::new(State {
                material,
                extra,
                configs: Arc::new(configs),
            }),
        })
    }

    /// The settings these configs follow.
    pub fn surface(&self) -> &TlsSurface {
        &self.surface
    }

    /// The configs in force now; new connections take them.
    pub fn current(&self) -> Arc<Configs> {
        self.state.read().configs.clone()
    }

    /// Re-reads the files. `Ok(true)` when the material changed and the
    /// new configs are in force; an error leaves the last good ones.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let material = Material::load(&self.surface)?;
        if material.digest() == self.current().digest {
            return Ok(false);
        }
        let mut state = self.state.write();
        let configs = Configs::build(&self.surface, &material, &self.server_name, &state.extra)?;
        state.material = Arc::new(material);
        state.configs = Arc::new(configs);
        Ok(true)
    }

    /// Changes what the surface has beyond its files (see [`Extra`]).
    pub fn update_extra(&self, change: impl FnOnce(&mut Extra)) -> Result<(), TlsError> {
        let mut state = self.state.write();
        let mut extra = state.extra.clone();
        change(&mut extra);
        let configs = Configs::build(&self.surface, &state.material, &self.server_name, &extra)?;
        state.extra = extra;
        state.configs = Arc::new(configs);
        Ok(())
    }

    /// The certificate the surface presents now (from its files, else
    /// assigned at run time).
    pub fn identity(&self) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let state = self.state.read();
        state
            .material
            .identity
            .clone()
            .or_else(|| state.extra.identity.clone())
    }
}

/// A dialer config for servers' HTTPS: the chain checked against the
/// surface's CA (servers are dialed by IP, so not the name), and as client
/// certificate whatever `tls` holds when each connection starts, so one
/// assigned later (auto_encrypt) is used without rebuilding the client.
pub fn live_client_config(tls: &Arc<SurfaceTls>) -> Option<Arc<rustls::ClientConfig>> {
    let roots = tls.state.read().material.roots.clone()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .ok()?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier::NameBlind(webpki)))
        .with_client_cert_resolver(Arc::new(LiveIdentity(tls.clone())));
    Some(Arc::new(config))
}

#[derive(Debug)]
struct LiveIdentity(Arc<SurfaceTls>);

impl std::fmt::Debug for SurfaceTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SurfaceTls")
            .field("surface", &self.surface.key)
            .finish()
    }
}

impl rustls::client::ResolvesClientCert for LiveIdentity {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.0.identity()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A certificate chain and key (PEM) as a presentable identity.
pub fn identity_from_pem(
    chain_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::sign::CertifiedKey>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("no PEM private key: {e}"))?;
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(chain, key, &provider)
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
