//! Key types as Consul names them, key generation, and loading of
//! user-supplied private keys.

use std::fmt;

use rcgen::{KeyPair, SignatureAlgorithm};
use rustls_pki_types::PrivatePkcs8KeyDer;
use serde::{Deserialize, Serialize};

use crate::der;
use crate::error::CaError;

/// A CA key type: Consul's `PrivateKeyType` + `PrivateKeyBits`.
///
/// EC P-521 is not offered: ring (the crypto backend) cannot sign with it, and
/// rustls-webpki with ring cannot verify it. `from_consul("ec", 521)` says so.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyType {
    /// ECDSA on P-256 with SHA-256 (Consul's default: `ec`, 256).
    #[default]
    #[serde(rename = "ec-256")]
    EcP256,
    /// ECDSA on P-384 with SHA-384 (`ec`, 384).
    #[serde(rename = "ec-384")]
    EcP384,
    /// RSA 2048 with PKCS#1 v1.5 SHA-256 (`rsa`, 2048).
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    /// RSA 4096 with PKCS#1 v1.5 SHA-256 (`rsa`, 4096).
    #[serde(rename = "rsa-4096")]
    Rsa4096,
}

impl KeyType {
    /// Parses Consul's `PrivateKeyType` ("ec"/"rsa") and `PrivateKeyBits`; bits 0 means the type's default.
    pub fn from_consul(kind: &str, bits: u32) -> Result<KeyType, CaError> {
        match (kind.to_ascii_lowercase().as_str(), bits) {
            ("ec" | "", 0 | 256) => Ok(KeyType::EcP256),
            ("ec" | "", 384) => Ok(KeyType::EcP384),
            ("ec" | "", 521) => Err(CaError::UnsupportedKeyType {
                key: "ec P-521".into(),
                reason: "the ring crypto backend cannot sign or verify P-521; use PrivateKeyBits 256 or 384",
            }),
            ("rsa", 0 | 2048) => Ok(KeyType::Rsa2048),
            ("rsa", 4096) => Ok(KeyType::Rsa4096),
            ("ec" | "", b) => Err(CaError::UnsupportedKeyType {
                key: format!("ec {b} bits"),
                reason: "EC keys must be 256 (P-256) or 384 (P-384) bits",
            }),
            ("rsa", b) => Err(CaError::UnsupportedKeyType {
                key: format!("rsa {b} bits"),
                reason: "RSA keys must be 2048 or 4096 bits",
            }),
            (_, _) => Err(CaError::UnsupportedKeyType {
                key: kind.to_string(),
                reason: "PrivateKeyType must be \"ec\" or \"rsa\"",
            }),
        }
    }

    /// Consul's `PrivateKeyType`: "ec" or "rsa".
    pub fn consul_type(self) -> &'static str {
        match self {
            KeyType::EcP256 | KeyType::EcP384 => "ec",
            KeyType::Rsa2048 | KeyType::Rsa4096 => "rsa",
        }
    }

    /// Consul's `PrivateKeyBits`.
    pub fn bits(self) -> u32 {
        match self {
            KeyType::EcP256 => 256,
            KeyType::EcP384 => 384,
            KeyType::Rsa2048 => 2048,
            KeyType::Rsa4096 => 4096,
        }
    }

    /// The signature algorithm used by a key of this type.
    pub(crate) fn algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyType::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyType::Rsa2048 | KeyType::Rsa4096 => &rcgen::PKCS_RSA_SHA256,
        }
    }

    /// Generates a fresh key of this type.
    ///
    /// EC keys come from ring (via rcgen); RSA keys from the `rsa` crate, then
    /// handed to ring as PKCS#8 for signing.
    pub(crate) fn generate(self) -> Result<KeyPair, CaError> {
        let fail = |reason: String| CaError::KeyGeneration {
            key: self.to_string(),
            reason,
        };
        match self {
            KeyType::EcP256 | KeyType::EcP384 => {
                KeyPair::generate_for(self.algorithm()).map_err(|e| fail(e.to_string()))
            }
            KeyType::Rsa2048 | KeyType::Rsa4096 => {
                use rsa::pkcs8::EncodePrivateKey;
                let key = rsa::PrivateKey::new(&mut RingRng::default(), self.bits() as usize)
                    .map_err(|e| fail(e.to_string()))?;
                let doc = key.to_pkcs8_der().map_err(|e| fail(e.to_string()))?;
                KeyPair::from_pkcs8_der_and_sign_algo(
                    &PrivatePkcs8KeyDer::from(doc.as_bytes()),
                    self.algorithm(),
                )
                .map_err(|e| fail(e.to_string()))
            }
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.consul_type(), self.bits())
    }
}

/// ring's system RNG as a `rand_core` 0.10 RNG, for the `rsa` crate's key generation.
struct RingRng(ring::rand::SystemRandom);

impl Default for RingRng {
    fn default() -> Self {
        RingRng(ring::rand::SystemRandom::new())
    }
}

/// The system RNG failed.
#[derive(Debug)]
struct RngError;

impl fmt::Display for RngError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("system random number generator failed")
    }
}

impl std::error::Error for RngError {}

impl rsa::rand_core::TryRng for RingRng {
    type Error = RngError;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        ring::rand::SecureRandom::fill(&self.0, dst).map_err(|_| RngError)
    }
}

impl rsa::rand_core::TryCryptoRng for RingRng {}

/// A PEM private key. Its `Debug` and `Display` never show the key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretPem(String);

impl SecretPem {
    /// Wraps a PEM string.
    pub fn new(pem: impl Into<String>) -> Self {
        SecretPem(pem.into())
    }

    /// The PEM text; handle with care (don't log it).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretPem(<redacted>)")
    }
}

/// The family of a private key, read from its PEM without using it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyFamily {
    Ec,
    Rsa,
    Other,
}

/// A private key PEM decoded to PKCS#8 DER, not yet bound to an algorithm.
pub(crate) struct RawKey {
    /// PKCS#8 DER, or a SEC1 body awaiting its curve.
    der: Vec<u8>,
    /// SEC1 keys need the curve from the certificate when they don't name it.
    sec1: bool,
    pub(crate) family: KeyFamily,
}

impl RawKey {
    /// Decodes the first private-key block of `pem`; `field` names the input in errors.
    pub(crate) fn parse(pem_text: &str, field: &'static str) -> Result<RawKey, CaError> {
        let bad = |reason: String| CaError::KeyPem { field, reason };
        let blocks = pem::parse_many(pem_text).map_err(|e| bad(e.to_string()))?;
        if blocks.is_empty() {
            return Err(bad("no PEM block found".into()));
        }
        for block in blocks {
            let der = block.contents().to_vec();
            match block.tag() {
                "PRIVATE KEY" => {
                    let (oid, _) = der::pkcs8_algorithm(&der)
                        .ok_or_else(|| bad("PRIVATE KEY block is not PKCS#8".into()))?;
                    let family = match oid {
                        o if o == der::OID_EC => KeyFamily::Ec,
                        o if o == der::OID_RSA => KeyFamily::Rsa,
                        _ => KeyFamily::Other,
                    };
                    return Ok(RawKey {
                        der,
                        sec1: false,
                        family,
                    });
                }
                "EC PRIVATE KEY" => {
                    return Ok(RawKey {
                        der,
                        sec1: true,
                        family: KeyFamily::Ec,
                    });
                }
                "RSA PRIVATE KEY" => {
                    let der = der::pkcs1_to_pkcs8(&der);
                    return Ok(RawKey {
                        der,
                        sec1: false,
                        family: KeyFamily::Rsa,
                    });
                }
                "ENCRYPTED PRIVATE KEY" => {
                    return Err(bad(
                        "the key is encrypted; decrypt it first (openssl pkcs8 -topk8 -nocrypt)"
                            .into(),
                    ));
                }
                _ => continue, // e.g. "EC PARAMETERS" before the key, as openssl writes it
            }
        }
        Err(bad(
            "no PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY block found".into(),
        ))
    }

    /// Binds the key to `key_type`; fails with `KeyMismatch` if it is a different kind of key.
    pub(crate) fn into_key_pair(self, key_type: KeyType) -> Result<KeyPair, CaError> {
        let der = if self.sec1 {
            let curve = match key_type {
                KeyType::EcP256 => der::OID_P256,
                KeyType::EcP384 => der::OID_P384,
                _ => return Err(CaError::KeyMismatch),
            };
            if der::sec1_curve(&self.der).is_some_and(|c| c != curve) {
                return Err(CaError::KeyMismatch);
            }
            der::sec1_to_pkcs8(&self.der, curve)
        } else {
            self.der
        };
        let wanted = match key_type {
            KeyType::EcP256 | KeyType::EcP384 => KeyFamily::Ec,
            _ => KeyFamily::Rsa,
        };
        if self.family != wanted {
            return Err(CaError::KeyMismatch);
        }
        KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(der), key_type.algorithm())
            .map_err(|_| CaError::KeyMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consul_names_round_trip() {
        for kt in [
            KeyType::EcP256,
            KeyType::EcP384,
            KeyType::Rsa2048,
            KeyType::Rsa4096,
        ] {
            assert_eq!(
                KeyType::from_consul(kt.consul_type(), kt.bits()).unwrap(),
                kt
            );
        }
        assert_eq!(KeyType::from_consul("ec", 0).unwrap(), KeyType::EcP256);
        assert_eq!(KeyType::from_consul("RSA", 0).unwrap(), KeyType::Rsa2048);
    }

    #[test]
    fn unsupported_types_are_errors_not_panics() {
        for (kind, bits) in [
            ("ec", 521),
            ("ec", 224),
            ("rsa", 1024),
            ("rsa", 3000),
            ("dsa", 2048),
        ] {
            let err = KeyType::from_consul(kind, bits).unwrap_err();
            assert!(
                matches!(err, CaError::UnsupportedKeyType { .. }),
                "{kind} {bits}: {err}"
            );
        }
        let msg = KeyType::from_consul("ec", 521).unwrap_err().to_string();
        assert!(msg.contains("P-521") && msg.contains("256 or 384"), "{msg}");
    }

    #[test]
    fn generated_ec_keys_reload_from_pem() {
        for kt in [KeyType::EcP256, KeyType::EcP384] {
            let kp = kt.generate().unwrap();
            let raw = RawKey::parse(&kp.serialize_pem(), "PrivateKey").unwrap();
            assert_eq!(raw.family, KeyFamily::Ec);
            let back = raw.into_key_pair(kt).unwrap();
            assert_eq!(back.public_key_raw(), kp.public_key_raw());
        }
    }

    #[test]
    fn rsa_generation_works_with_ring_signing() {
        let kp = KeyType::Rsa2048.generate().unwrap();
        assert_eq!(kp.algorithm(), &rcgen::PKCS_RSA_SHA256);
        let raw = RawKey::parse(&kp.serialize_pem(), "PrivateKey").unwrap();
        assert_eq!(raw.family, KeyFamily::Rsa);
        assert!(matches!(
            raw.into_key_pair(KeyType::EcP256),
            Err(CaError::KeyMismatch)
        ));
    }

    #[test]
    fn rsa_4096_generates() {
        let kp = KeyType::Rsa4096.generate().unwrap();
        assert_eq!(kp.algorithm(), &rcgen::PKCS_RSA_SHA256);
    }

    #[test]
    fn garbage_and_encrypted_keys_name_the_field() {
        let err = RawKey::parse("not a key", "PrivateKey").err().unwrap();
        assert!(err
            .to_string()
            .starts_with("PrivateKey is not a usable PEM private key"));
        let enc =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let err = RawKey::parse(enc, "PrivateKey").err().unwrap();
        assert!(err.to_string().contains("encrypted"), "{err}");
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = SecretPem::new("-----BEGIN PRIVATE KEY-----\nsecret\n");
        assert_eq!(format!("{s:?}"), "SecretPem(<redacted>)");
    }
}
