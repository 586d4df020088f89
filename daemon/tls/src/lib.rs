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

pub use configs::Configs;
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
/// from the files as last read successfully.
pub struct SurfaceTls {
    surface: TlsSurface,
    server_name: String,
    current: RwLock<Arc<Configs>>,
}

impl SurfaceTls {
    /// Loads `surface`'s files; `server_name` is what servers must be
    /// certified for (`server.<dc>.<domain>`).
    pub fn load(surface: &TlsSurface, server_name: &str) -> Result<SurfaceTls, TlsError> {
        let material = Material::load(surface)?;
        let configs = Configs::build(surface, &material, server_name)?;
        Ok(SurfaceTls {
            surface: surface.clone(),
            server_name: server_name.to_string(),
            current: RwLock::new(Arc::new(configs)),
        })
    }

    /// The settings these configs follow.
    pub fn surface(&self) -> &TlsSurface {
        &self.surface
    }

    /// The configs in force now; new connections take them.
    pub fn current(&self) -> Arc<Configs> {
        self.current.read().clone()
    }

    /// Re-reads the files. `Ok(true)` when the material changed and the
    /// new configs are in force; an error leaves the last good ones.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let material = Material::load(&self.surface)?;
        if material.digest() == self.current().digest {
            return Ok(false);
        }
        let configs = Configs::build(&self.surface, &material, &self.server_name)?;
        *self.current.write() = Arc::new(configs);
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
