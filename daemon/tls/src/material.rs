//! Reading a surface's PEM files: the certificate chain, its key, the CA
//! roots; every failure names the key and the file.

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;

use mesh_config::TlsSurface;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

use crate::TlsError;

/// The most CA files `ca_path` may hold; a bound against a wrong directory.
const MAX_CA_PATH_FILES: usize = 1000;

/// What a surface's files hold, checked.
pub struct Material {
    /// The agent's certificate chain and key, when configured.
    pub identity: Option<Arc<CertifiedKey>>,
    /// The CAs peers are checked against, when configured.
    pub roots: Option<Arc<RootCertStore>>,
    digest: u64,
}

impl Material {
    /// Reads and checks `surface`'s files.
    pub fn load(surface: &TlsSurface) -> Result<Material, TlsError> {
        let mut digest = std::collections::hash_map::DefaultHasher::new();
        let fail = |field: &str, path: &Path, reason: String| TlsError {
            key: format!("{}.{field}", surface.key),
            path: path.display().to_string(),
            reason,
        };
        let identity = match (&surface.cert_file, &surface.key_file) {
            (Some(cert_file), Some(key_file)) => {
                let cert_pem = read(cert_file).map_err(|e| fail("cert_file", cert_file, e))?;
                let key_pem = read(key_file).map_err(|e| fail("key_file", key_file, e))?;
                cert_pem.hash(&mut digest);
                key_pem.hash(&mut digest);
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
                    .collect::<Result<_, _>>()
                    .map_err(|e| {
                        fail("cert_file", cert_file, format!("not PEM certificates: {e}"))
                    })?;
                if chain.is_empty() {
                    return Err(fail(
                        "cert_file",
                        cert_file,
                        "no CERTIFICATE block in it".into(),
                    ));
                }
                let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
                    fail(
                        "key_file",
                        key_file,
                        format!("no PEM private key in it: {e}"),
                    )
                })?;
                let provider = rustls::crypto::ring::default_provider();
                let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
                    fail(
                        "key_file",
                        key_file,
                        format!("does not go with cert_file {}: {e}", cert_file.display()),
                    )
                })?;
                Some(Arc::new(certified))
            }
            _ => None,
        };
        let mut roots = RootCertStore::empty();
        if let Some(ca_file) = &surface.ca_file {
            let pem = read(ca_file).map_err(|e| fail("ca_file", ca_file, e))?;
            pem.hash(&mut digest);
            add_roots(&mut roots, &pem).map_err(|e| fail("ca_file", ca_file, e))?;
        }
        if let Some(ca_path) = &surface.ca_path {
            let mut files: Vec<_> = std::fs::read_dir(ca_path)
                .map_err(|e| fail("ca_path", ca_path, format!("cannot list it: {e}")))?
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|p| {
                    p.extension()
                        .is_some_and(|e| e == "pem" || e == "crt" || e == "cer")
                })
                .collect();
            if files.len() > MAX_CA_PATH_FILES {
                return Err(fail(
                    "ca_path",
                    ca_path,
                    format!("more than {MAX_CA_PATH_FILES} certificate files (MAX_CA_PATH_FILES)"),
                ));
            }
            files.sort();
            for file in files {
                let pem = read(&file).map_err(|e| fail("ca_path", &file, e))?;
                pem.hash(&mut digest);
                add_roots(&mut roots, &pem).map_err(|e| fail("ca_path", &file, e))?;
            }
        }
        let roots = (surface.has_ca()).then(|| Arc::new(roots));
        Ok(Material {
            identity,
            roots,
            digest: digest.finish(),
        })
    }

    /// A fingerprint of every file read, to tell a reload that changed nothing.
    pub fn digest(&self) -> u64 {
        self.digest
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))
}

fn add_roots(roots: &mut RootCertStore, pem: &[u8]) -> Result<(), String> {
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("not PEM certificates: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("a certificate in it is not a usable CA: {e}"))?;
        added += 1;
    }
    if added == 0 {
        return Err("no CERTIFICATE block in it".into());
    }
    Ok(())
}
