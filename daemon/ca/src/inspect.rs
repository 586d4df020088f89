//! Reading facts out of certificates (x509-parser) and small encoding helpers.

use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION};
use x509_parser::prelude::X509Certificate;

use crate::der;
use crate::error::CaError;
use crate::key::KeyType;

/// The public key found in a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CertKey {
    /// A key type we can use.
    Supported(KeyType),
    /// Anything else, described for error messages (e.g. `ec P-521`).
    Unsupported(String),
}

/// The facts about a certificate that the CA needs.
#[derive(Debug, Clone)]
pub(crate) struct CertInfo {
    pub der: Vec<u8>,
    pub subject_raw: Vec<u8>,
    pub issuer_raw: Vec<u8>,
    pub serial: Vec<u8>,
    pub not_before: i64,
    pub not_after: i64,
    /// basicConstraints cA = TRUE.
    pub is_ca: bool,
    /// keyUsage keyCertSign, or `None` when there is no keyUsage extension.
    pub key_cert_sign: Option<bool>,
    pub uris: Vec<String>,
    pub ski: Option<Vec<u8>>,
    pub key: CertKey,
    /// Full SubjectPublicKeyInfo DER.
    pub spki: Vec<u8>,
    /// The subjectPublicKey BIT STRING contents.
    pub public_key: Vec<u8>,
}

impl CertInfo {
    /// Parses one DER certificate.
    pub(crate) fn from_der(der: &[u8], field: &'static str) -> Result<CertInfo, CaError> {
        let bad = |reason: String| CaError::CertPem { field, reason };
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| bad(format!("not X.509 ({e})")))?;
        let ext_err = |e: x509_parser::error::X509Error| bad(format!("bad extension ({e})"));
        let is_ca = cert
            .basic_constraints()
            .map_err(ext_err)?
            .is_some_and(|bc| bc.value.ca);
        let key_cert_sign = cert
            .key_usage()
            .map_err(ext_err)?
            .map(|ku| ku.value.key_cert_sign());
        let mut uris = Vec::new();
        if let Some(san) = cert.subject_alternative_name().map_err(ext_err)? {
            for name in &san.value.general_names {
                if let GeneralName::URI(u) = name {
                    uris.push(u.to_string());
                }
            }
        }
        let ski = cert
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            });
        let spki = cert.public_key();
        Ok(CertInfo {
            der: der.to_vec(),
            subject_raw: cert.subject().as_raw().to_vec(),
            issuer_raw: cert.issuer().as_raw().to_vec(),
            serial: cert.raw_serial().to_vec(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            is_ca,
            key_cert_sign,
            uris,
            ski,
            key: cert_key(&cert),
            spki: spki.raw.to_vec(),
            public_key: spki.subject_public_key.data.to_vec(),
        })
    }

    /// Parses the first certificate of a PEM text.
    pub(crate) fn from_pem(pem_text: &str, field: &'static str) -> Result<CertInfo, CaError> {
        let ders = pem_certs(pem_text, field)?;
        CertInfo::from_der(&ders[0], field)
    }

    /// Subject equals issuer and the signature verifies with the certificate's own key.
    pub(crate) fn is_self_signed(&self) -> bool {
        if self.subject_raw != self.issuer_raw {
            return false;
        }
        x509_parser::parse_x509_certificate(&self.der)
            .map(|(_, c)| c.verify_signature(None).is_ok())
            .unwrap_or(false)
    }

    /// The SPIFFE URIs among the URI SANs.
    pub(crate) fn spiffe_uris(&self) -> impl Iterator<Item = &str> {
        self.uris
            .iter()
            .map(String::as_str)
            .filter(|u| u.starts_with("spiffe://"))
    }

    /// The serial number's low 64 bits (Consul's roots API carries a uint64).
    pub(crate) fn serial_u64(&self) -> u64 {
        self.serial
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    }
}

fn cert_key(cert: &X509Certificate<'_>) -> CertKey {
    let spki = cert.public_key();
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .map(|p| p.data)
            .unwrap_or(&[]);
        match curve {
            c if c == der::OID_P256 => CertKey::Supported(KeyType::EcP256),
            c if c == der::OID_P384 => CertKey::Supported(KeyType::EcP384),
            c if c == der::OID_P521 => CertKey::Unsupported("ec P-521".into()),
            _ => CertKey::Unsupported("ec (unknown curve)".into()),
        }
    } else if *alg == OID_PKCS1_RSAENCRYPTION {
        let bits = spki.parsed().map(|k| k.key_size()).unwrap_or(0);
        match bits {
            2048 => CertKey::Supported(KeyType::Rsa2048),
            4096 => CertKey::Supported(KeyType::Rsa4096),
            b => CertKey::Unsupported(format!("rsa {b} bits")),
        }
    } else {
        CertKey::Unsupported(format!("algorithm {alg}"))
    }
}

/// All CERTIFICATE blocks of a PEM text, as DER; at least one.
pub(crate) fn pem_certs(pem_text: &str, field: &'static str) -> Result<Vec<Vec<u8>>, CaError> {
    let bad = |reason: String| CaError::CertPem { field, reason };
    let blocks = pem::parse_many(pem_text).map_err(|e| bad(e.to_string()))?;
    let ders: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| b.into_contents())
        .collect();
    if ders.is_empty() {
        return Err(bad("no CERTIFICATE block found".into()));
    }
    Ok(ders)
}

/// DER certificate to PEM (LF line endings, trailing newline).
pub(crate) fn to_pem(der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new("CERTIFICATE", der.to_vec()), config)
}

/// Lower-case colon-separated hex, as Consul prints serials and key IDs.
pub(crate) fn colon_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Colon-hex SHA-256 of `der`: the ID of a root.
pub(crate) fn sha256_id(der: &[u8]) -> String {
    colon_hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colon_hex_matches_consul_style() {
        assert_eq!(colon_hex(&[0x0a, 0xff, 0x00]), "0a:ff:00");
        assert_eq!(colon_hex(&[]), "");
    }

    #[test]
    fn pem_without_certificates_is_an_error_naming_the_field() {
        let err = pem_certs("hello", "RootCert").unwrap_err();
        assert!(
            matches!(
                err,
                CaError::CertPem {
                    field: "RootCert",
                    ..
                }
            ),
            "{err}"
        );
        let key_only = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(pem_certs(key_only, "RootCert").is_err());
    }

    #[test]
    fn garbage_der_in_a_certificate_block_is_an_error() {
        let pem = to_pem(b"definitely not x509");
        let err = CertInfo::from_pem(&pem, "RootCert").unwrap_err();
        assert!(
            err.to_string()
                .contains("RootCert is not a valid PEM certificate"),
            "{err}"
        );
    }
}
