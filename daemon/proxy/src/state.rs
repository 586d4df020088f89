//! The current snapshot and what is derived from it once per change.
//!
//! TLS callbacks and connections call [`Current::get`], which re-derives the
//! trust anchors, leaf key and compiled intentions only when the snapshot in
//! the watch channel is a new one.

use std::fmt;
use std::sync::{Arc, Mutex};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, TrustAnchor};
use tokio::sync::watch;

use crate::snapshot::ProxySnapshot;
use crate::Error;
use mesh_policy::Policy;

/// Everything derived from one snapshot.
pub(crate) struct Material {
    /// The snapshot itself.
    pub snap: Arc<ProxySnapshot>,
    /// Trust anchors from `Roots` (cross-signed intermediates included).
    pub anchors: Vec<TrustAnchor<'static>>,
    /// The same roots as DER, also offered as intermediates when building chains.
    pub roots_der: Vec<CertificateDer<'static>>,
    /// Our certificate and key, ready for rustls.
    pub leaf: Option<Arc<CertifiedKey>>,
    /// Compiled intentions.
    pub policy: Policy,
    /// A terminating gateway's linked services, by the SNI callers send:
    /// the leaf it presents and the intentions it enforces for each.
    pub linked: std::collections::HashMap<String, Arc<Linked>>,
}

/// What a terminating gateway needs of one linked service.
pub(crate) struct Linked {
    /// Its index in the snapshot's `linked`.
    pub index: usize,
    pub leaf: Option<Arc<CertifiedKey>>,
    pub policy: Policy,
}

impl Material {
    /// The linked service a caller named by SNI, or the only one there is.
    pub(crate) fn linked_for(&self, sni: Option<&str>) -> Option<Arc<Linked>> {
        match sni.and_then(|n| self.linked.get(&n.to_ascii_lowercase())) {
            Some(l) => Some(l.clone()),
            None if self.linked.len() == 1 => self.linked.values().next().cloned(),
            None => None,
        }
    }

    fn build(snap: Arc<ProxySnapshot>, provider: &CryptoProvider) -> Self {
        let mut roots_der = Vec::new();
        for pem in &snap.roots {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                match cert {
                    Ok(c) => roots_der.push(c),
                    Err(e) => tracing::warn!(error = %e, "skipping unparsable root"),
                }
            }
        }
        let anchors = roots_der
            .iter()
            .filter_map(|c| match webpki::anchor_from_trusted_cert(c) {
                Ok(a) => Some(a.to_owned()),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping unusable root");
                    None
                }
            })
            .collect();
        let leaf = snap.leaf.as_ref().and_then(|l| {
            match certified_key(&l.cert_pem, &l.private_key_pem, provider) {
                Ok(k) => Some(Arc::new(k)),
                Err(e) => {
                    tracing::error!(error = %e, index = snap.index, "snapshot leaf unusable");
                    None
                }
            }
        });
        let policy = Policy::compile(&snap.intentions);
        let linked = snap
            .linked
            .iter()
            .enumerate()
            .map(|(index, l)| {
                let leaf = l.leaf.as_ref().and_then(|leaf| {
                    certified_key(&leaf.cert_pem, &leaf.private_key_pem, provider)
                        .map_err(|e| tracing::error!(service = %l.service, error = %e, "linked service leaf unusable"))
                        .ok()
                        .map(Arc::new)
                });
                let linked = Linked {
                    index,
                    leaf,
                    policy: Policy::compile(&l.intentions),
                };
                (l.sni.to_ascii_lowercase(), Arc::new(linked))
            })
            .collect();
        Self {
            snap,
            anchors,
            roots_der,
            leaf,
            policy,
            linked,
        }
    }
}

/// Parses a PEM chain and key into a rustls `CertifiedKey`.
pub(crate) fn certified_key(
    cert_pem: &str,
    key_pem: &str,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, Error> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Leaf(format!("certificate PEM: {e}")))?;
    if chain.is_empty() {
        return Err(Error::Leaf("no certificate in CertPEM".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| Error::Leaf(format!("private key PEM: {e}")))?;
    let key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| Error::Leaf(format!("private key: {e}")))?;
    Ok(CertifiedKey::new(chain, key))
}

/// A handle on the latest snapshot with its derived material cached.
#[derive(Clone)]
pub(crate) struct Current {
    rx: watch::Receiver<Arc<ProxySnapshot>>,
    cache: Arc<Mutex<Arc<Material>>>,
    /// The crypto provider (ring) used everywhere in the proxy.
    pub provider: Arc<CryptoProvider>,
}

impl fmt::Debug for Current {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Current").finish_non_exhaustive()
    }
}

impl Current {
    /// Wraps a snapshot receiver.
    pub fn new(rx: watch::Receiver<Arc<ProxySnapshot>>) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let first = Material::build(rx.borrow().clone(), &provider);
        Self {
            rx,
            cache: Arc::new(Mutex::new(Arc::new(first))),
            provider,
        }
    }

    /// The material for the snapshot in the channel right now.
    pub fn get(&self) -> Arc<Material> {
        let snap = self.rx.borrow().clone();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if !Arc::ptr_eq(&cache.snap, &snap) {
            *cache = Arc::new(Material::build(snap, &self.provider));
        }
        cache.clone()
    }

    /// A fresh receiver, for a task that waits on changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ProxySnapshot>> {
        let mut rx = self.rx.clone();
        rx.mark_unchanged();
        rx
    }
}
