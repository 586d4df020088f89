//! The HTTPS API's TLS settings: the same router as plain HTTP behind rustls
//! (TLS 1.2/1.3, ring); `http_server` runs each handshake in the
//! connection's own task, so a slow client never holds up the accept loop.

use std::sync::Arc;

use anyhow::Context;
use mesh_config::TlsFiles;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The server config from the PEM files, with errors naming the file.
pub(crate) fn server_config(files: &TlsFiles) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let cert_file = files.cert_file.display();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert_file)
        .with_context(|| format!("tls.defaults.cert_file {cert_file}: cannot read it"))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("tls.defaults.cert_file {cert_file}: not PEM certificates"))?;
    if certs.is_empty() {
        anyhow::bail!("tls.defaults.cert_file {cert_file}: no CERTIFICATE block in it");
    }
    let key_file = files.key_file.display();
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .with_context(|| format!("tls.defaults.key_file {key_file}: no PEM private key in it"))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS versions")?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .with_context(|| format!("{cert_file} and {key_file} do not make a usable pair"))?;
    Ok(Arc::new(config))
}
