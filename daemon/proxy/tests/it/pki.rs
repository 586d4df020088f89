//! Test CAs and SPIFFE leaves made with rcgen (the real CA lives in mesh-ca).
//!
//! Also included by the bench example via `#[path]`.
#![allow(dead_code)]

use mesh_proxy::Leaf;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// A root CA (or a CA whose certificate was cross-signed).
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    /// The self-signed certificate, PEM.
    pub pem: String,
}

impl Ca {
    /// A new self-signed root.
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = OffsetDateTime::now_utc() - Duration::hours(1);
        params.not_after = OffsetDateTime::now_utc() + Duration::days(365);
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { params, key, pem }
    }

    /// A leaf for `spiffe://<td>/ns/default/dc/<dc>/svc/<service>`, valid now.
    pub fn leaf(&self, td: &str, dc: &str, service: &str) -> Leaf {
        let uri = format!("spiffe://{td}/ns/default/dc/{dc}/svc/{service}");
        let now = OffsetDateTime::now_utc();
        self.leaf_with(&uri, now - Duration::hours(1), now + Duration::days(3))
    }

    /// A leaf with an explicit URI SAN and validity window.
    pub fn leaf_with(
        &self,
        uri: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "mesh leaf");
        params
            .subject_alt_names
            .push(SanType::URI(uri.try_into().unwrap()));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = not_before;
        params.not_after = not_after;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            private_key_pem: key.serialize_pem(),
        }
    }

    /// A new CA whose certificate this CA signs; its `pem` is that certificate.
    pub fn intermediate(&self, name: &str) -> Ca {
        let mut ca = Ca::new(name);
        ca.pem = self.cross_sign(&ca);
        ca
    }

    /// Like [`Ca::leaf`], with this CA's certificate appended to the chain.
    pub fn leaf_with_chain(&self, td: &str, dc: &str, service: &str) -> Leaf {
        let mut leaf = self.leaf(td, dc, service);
        leaf.cert_pem.push_str(&self.pem);
        leaf
    }

    /// `other`'s CA certificate signed by this CA (a cross-signed intermediate).
    pub fn cross_sign(&self, other: &Ca) -> String {
        let issuer = Issuer::from_params(&self.params, &self.key);
        other.params.signed_by(&other.key, &issuer).unwrap().pem()
    }
}
