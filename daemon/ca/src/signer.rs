//! Leaf certificates for service identities: a `Signer` is built once per root
//! (key parsed once) and signs leaves or CSRs.

use std::time::Duration;

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::CaError;
use crate::inspect::{colon_hex, CertInfo, CertKey};
use crate::key::{RawKey, SecretPem};
use crate::root::{validity, RootCa};
use crate::{unix_now, DEFAULT_LEAF_TTL};

/// What to issue: the service identity and the lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafRequest {
    /// Service name (the `svc` part of the SPIFFE ID).
    pub service: String,
    /// Datacenter (the `dc` part).
    pub datacenter: String,
    /// Namespace; always `default` without Enterprise namespaces.
    pub namespace: String,
    /// Requested lifetime; capped at the signing certificate's expiry.
    pub ttl: Duration,
    /// Extra DNS SANs, e.g. from [`default_dns_san`]; empty by default.
    pub dns_sans: Vec<String>,
    /// An agent's certificate (auto_encrypt) rather than a service's: the
    /// node ID, for `spiffe://<td>/agent/client/dc/<dc>/id/<node id>`.
    /// Its CSR may ask for no DNS name beyond `dns_sans`.
    pub agent_id: Option<String>,
}

impl LeafRequest {
    /// A request for `service` in `datacenter`, namespace `default`, no DNS SANs.
    pub fn new(service: impl Into<String>, datacenter: impl Into<String>, ttl: Duration) -> Self {
        LeafRequest {
            service: service.into(),
            datacenter: datacenter.into(),
            namespace: "default".into(),
            ttl,
            dns_sans: Vec::new(),
            agent_id: None,
        }
    }
}

impl Default for LeafRequest {
    fn default() -> Self {
        LeafRequest::new("", "dc1", DEFAULT_LEAF_TTL)
    }
}

/// An issued leaf, in the shape of Consul's `/agent/connect/ca/leaf` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// The leaf certificate PEM followed by the CA certificates that chain it
    /// to the roots (signing intermediate, cross-signed root), as Consul does.
    pub cert_pem: String,
    /// The leaf's EC P-256 private key, PKCS#8 PEM; `None` for CSR-signed leaves.
    pub private_key_pem: Option<SecretPem>,
    /// Colon-hex serial number.
    pub serial: String,
    /// Service name.
    pub service: String,
    /// The URI SAN: `spiffe://<td>/ns/<ns>/dc/<dc>/svc/<service>`.
    pub spiffe_id: String,
    /// notBefore, unix seconds (back-dated one minute for clock skew).
    pub valid_after: i64,
    /// notAfter, unix seconds.
    pub valid_before: i64,
    /// ID of the root whose signer issued it.
    pub root_id: String,
}

/// Signs leaves for one root. Build once (parses the key); `Send + Sync`, share it in an `Arc`.
pub struct Signer {
    issuer: Issuer<'static, KeyPair>,
    chain: String,
    trust_domain: String,
    root_id: String,
    max_not_after: i64,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("root_id", &self.root_id)
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

// === impl Signer ===

impl Signer {
    /// Parses the root's signing certificate and key once.
    pub fn new(root: &RootCa) -> Result<Signer, CaError> {
        let (cert_pem, key) = root.signing_pair();
        let info = CertInfo::from_pem(cert_pem, "signing certificate")?;
        let CertKey::Supported(key_type) = info.key else {
            return Err(CaError::UnsupportedKeyType {
                key: format!("{:?}", info.key),
                reason: "the signing certificate's key is not supported",
            });
        };
        let key = RawKey::parse(key.expose(), "signing key")?.into_key_pair(key_type)?;
        let issuer = Issuer::from_ca_cert_der(&info.der.clone().into(), key).map_err(|e| {
            CaError::UnsupportedSubject {
                reason: e.to_string(),
            }
        })?;
        let chain = root
            .chain_pems()
            .iter()
            .map(|p| ensure_newline(p))
            .collect();
        Ok(Signer {
            issuer,
            chain,
            trust_domain: root.trust_domain.clone(),
            root_id: root.id.clone(),
            max_not_after: info.not_after,
        })
    }

    /// ID of the root this signer belongs to.
    pub fn root_id(&self) -> &str {
        &self.root_id
    }

    /// True when this signer still matches `root` (same root, same chain); rebuild it otherwise.
    pub fn is_for(&self, root: &RootCa) -> bool {
        let chain: String = root
            .chain_pems()
            .iter()
            .map(|p| ensure_newline(p))
            .collect();
        self.root_id == root.id && self.chain == chain
    }

    /// Issues a leaf with a fresh EC P-256 key, valid from now.
    pub fn sign_leaf(&self, req: &LeafRequest) -> Result<Leaf, CaError> {
        self.sign_leaf_at(req, unix_now())
    }

    /// Issues a leaf with a fresh EC P-256 key; `now` in unix seconds.
    pub fn sign_leaf_at(&self, req: &LeafRequest, now: i64) -> Result<Leaf, CaError> {
        let key = KeyPair::generate().map_err(|e| CaError::KeyGeneration {
            key: "ec 256".into(),
            reason: e.to_string(),
        })?;
        let mut leaf = self.issue(req, &key, Vec::new(), now)?;
        leaf.private_key_pem = Some(SecretPem::new(key.serialize_pem()));
        Ok(leaf)
    }

    /// Signs a PEM CSR whose only URI SAN must be the request's SPIFFE ID (Consul's `/v1/connect/ca/leaf`).
    ///
    /// The CSR's signature is verified; its DNS SANs are kept, every other
    /// requested extension is replaced by the leaf profile.
    pub fn sign_csr(&self, csr_pem: &str, req: &LeafRequest) -> Result<Leaf, CaError> {
        self.sign_csr_at(csr_pem, req, unix_now())
    }

    /// Like [`Signer::sign_csr`] with `now` given.
    pub fn sign_csr_at(&self, csr_pem: &str, req: &LeafRequest, now: i64) -> Result<Leaf, CaError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| CaError::Csr {
            reason: e.to_string(),
        })?;
        let expected = self.spiffe_id(req)?;
        let mut uris = Vec::new();
        let mut dns = Vec::new();
        for san in &csr.params.subject_alt_names {
            match san {
                SanType::URI(u) => uris.push(u.as_str().to_string()),
                SanType::DnsName(d) => dns.push(d.as_str().to_string()),
                _ => {}
            }
        }
        if uris != [expected.as_str()] {
            return Err(CaError::CsrIdentity {
                expected,
                found: uris.join(","),
            });
        }
        if req.agent_id.is_some() {
            // An agent's names are the server's choice, never the CSR's.
            if let Some(name) = dns.iter().find(|d| !req.dns_sans.contains(d)) {
                return Err(CaError::CsrIdentity {
                    expected: format!("DNS names among {:?}", req.dns_sans),
                    found: name.clone(),
                });
            }
            return self.issue(req, &csr.public_key, Vec::new(), now);
        }
        self.issue(req, &csr.public_key, dns, now)
    }

    /// The SPIFFE ID a request is issued for, after validating its names.
    fn spiffe_id(&self, req: &LeafRequest) -> Result<String, CaError> {
        check_name("datacenter", &req.datacenter)?;
        if let Some(id) = &req.agent_id {
            check_name("node ID", id)?;
            return Ok(format!(
                "spiffe://{}/agent/client/dc/{}/id/{id}",
                self.trust_domain, req.datacenter
            ));
        }
        check_name("service", &req.service)?;
        check_name("namespace", &req.namespace)?;
        Ok(mesh_types::SpiffeId {
            trust_domain: self.trust_domain.clone(),
            namespace: req.namespace.clone(),
            datacenter: req.datacenter.clone(),
            service: req.service.clone(),
        }
        .to_string())
    }

    fn issue(
        &self,
        req: &LeafRequest,
        public_key: &impl PublicKeyData,
        extra_dns: Vec<String>,
        now: i64,
    ) -> Result<Leaf, CaError> {
        let spiffe_id = self.spiffe_id(req)?;
        let (not_before, mut not_after) = validity(now, req.ttl)?;
        if not_after.unix_timestamp() > self.max_not_after {
            not_after =
                time::OffsetDateTime::from_unix_timestamp(self.max_not_after).map_err(|e| {
                    CaError::InvalidTtl {
                        reason: e.to_string(),
                    }
                })?;
        }
        if not_after.unix_timestamp() <= now {
            return Err(CaError::Expired {
                what: "signing certificate",
                not_after: crate::rfc3339(self.max_not_after),
            });
        }
        let serial = random_serial(16);
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, req.service.as_str());
        params
            .subject_alt_names
            .push(SanType::URI(spiffe_id.as_str().try_into()?));
        for name in req.dns_sans.iter().chain(&extra_dns) {
            params
                .subject_alt_names
                .push(SanType::DnsName(name.as_str().try_into()?));
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.signed_by(public_key, &self.issuer)?;
        let mut cert_pem = cert.pem();
        cert_pem.push_str(&self.chain);
        Ok(Leaf {
            cert_pem,
            private_key_pem: None,
            serial: colon_hex(&serial),
            service: req.service.clone(),
            spiffe_id,
            valid_after: not_before.unix_timestamp(),
            valid_before: not_after.unix_timestamp(),
            root_id: self.root_id.clone(),
        })
    }
}

/// Consul's DNS SAN for a service: `<svc>.svc.default.<first 8 chars of trust domain>.consul`.
pub fn default_dns_san(service: &str, trust_domain: &str) -> String {
    let short: String = trust_domain.chars().take(8).collect();
    format!("{service}.svc.default.{short}.consul")
}

/// Rejects names that would break a SPIFFE ID or DNS SAN.
pub(crate) fn check_name(field: &'static str, value: &str) -> Result<(), CaError> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(CaError::InvalidName {
            field,
            value: value.to_string(),
        })
    }
}

/// `len` random bytes forming a positive serial whose DER encoding keeps every byte.
pub(crate) fn random_serial(len: usize) -> Vec<u8> {
    let mut serial = vec![0u8; len];
    // The system RNG failing is unrecoverable for a CA; ring only fails if getrandom does.
    SystemRandom::new()
        .fill(&mut serial)
        .expect("system RNG failed");
    serial[0] = (serial[0] & 0x7f).max(1);
    serial
}

fn ensure_newline(pem: &str) -> String {
    if pem.ends_with('\n') {
        pem.to_string()
    } else {
        format!("{pem}\n")
    }
}

#[cfg(test)]
#[path = "signer_tests.rs"]
mod tests;

/// A fresh EC P-256 key and a PEM CSR for `spiffe_id`: what an agent that
/// must not receive private keys over the network sends a server to sign.
pub fn key_and_csr(spiffe_id: &str) -> Result<(SecretPem, String), CaError> {
    let key = KeyPair::generate().map_err(|e| CaError::KeyGeneration {
        key: "ec 256".into(),
        reason: e.to_string(),
    })?;
    let uri = spiffe_id
        .try_into()
        .map_err(|e: rcgen::Error| CaError::Csr {
            reason: format!("{spiffe_id:?}: {e}"),
        })?;
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(uri)];
    let csr = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(|e| CaError::Csr {
            reason: e.to_string(),
        })?;
    Ok((SecretPem::new(key.serialize_pem()), csr))
}
