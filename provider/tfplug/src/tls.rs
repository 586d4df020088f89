//! go-plugin AutoMTLS: a fresh self-signed server certificate that Terraform
//! trusts as its own root, and a client verifier that accepts exactly the
//! certificate Terraform passed in `PLUGIN_CLIENT_CERT`.
//!
//! Terraform's client certificate is self-signed with the CA flag set and an
//! ECDSA P-521 key. webpki's path building rejects a CA certificate used as an
//! end entity, and ring cannot verify P-521, so the verifier pins the exact
//! certificate bytes and checks P-521/SHA-512 handshake signatures with
//! RustCrypto's `p521`; other schemes go to ring.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    alg_id, AlgorithmIdentifier, CertificateDer, InvalidSignature, PrivateKeyDer,
    PrivatePkcs8KeyDer, SignatureVerificationAlgorithm, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::Error;

/// The server side of AutoMTLS: the rustls config and the certificate to announce.
pub struct AutoMtls {
    /// Server config requiring Terraform's client certificate, ALPN h2.
    pub config: Arc<rustls::ServerConfig>,
    /// DER of the server certificate (printed base64 in the handshake line).
    pub cert_der: Vec<u8>,
}

/// Builds the AutoMTLS server config for the PEM client certificate Terraform sent.
pub fn auto_mtls(client_cert_pem: &str) -> Result<AutoMtls, Error> {
    let tls = |e: &dyn std::fmt::Display| Error::Tls(e.to_string());
    let client = CertificateDer::from_pem_slice(client_cert_pem.as_bytes()).map_err(|e| tls(&e))?;

    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| tls(&e))?;
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string()]).map_err(|e| tls(&e))?;
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "HashiCorp");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
        rcgen::KeyUsagePurpose::KeyCertSign,
    ];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.self_signed(&key).map_err(|e| tls(&e))?;
    let cert_der = cert.der().to_vec();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = PinnedClient {
        cert: client.into_owned(),
        provider: provider.clone(),
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(
            vec![CertificateDer::from(cert_der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .map_err(|e| tls(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(AutoMtls {
        config: Arc::new(config),
        cert_der,
    })
}

/// Accepts exactly one client certificate and verifies its handshake signatures.
#[derive(Debug)]
struct PinnedClient {
    cert: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl PinnedClient {
    fn algorithms(&self, scheme: SignatureScheme) -> &WebPkiSupportedAlgorithms {
        if scheme == SignatureScheme::ECDSA_NISTP521_SHA512 {
            &P521_ALGORITHMS
        } else {
            &self.provider.signature_verification_algorithms
        }
    }
}

impl ClientCertVerifier for PinnedClient {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, self.algorithms(dss.scheme))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, self.algorithms(dss.scheme))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        let mut schemes = self
            .provider
            .signature_verification_algorithms
            .supported_schemes();
        // Go only sends a client certificate if the server lists its key's scheme.
        schemes.push(SignatureScheme::ECDSA_NISTP521_SHA512);
        schemes
    }
}

/// ECDSA P-521 with SHA-512, verified by RustCrypto's `p521`.
#[derive(Debug)]
struct EcdsaP521Sha512;

static P521_SHA512: EcdsaP521Sha512 = EcdsaP521Sha512;

static P521_ALGORITHMS: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
    all: &[&P521_SHA512],
    mapping: &[(SignatureScheme::ECDSA_NISTP521_SHA512, &[&P521_SHA512])],
};

impl SignatureVerificationAlgorithm for EcdsaP521Sha512 {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        use p521::ecdsa::signature::Verifier;
        let key =
            p521::ecdsa::VerifyingKey::from_sec1_bytes(public_key).map_err(|_| InvalidSignature)?;
        let sig = p521::ecdsa::Signature::from_der(signature).map_err(|_| InvalidSignature)?;
        key.verify(message, &sig).map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ECDSA_P521
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ECDSA_SHA512
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p521::ecdsa::signature::Signer;

    #[test]
    fn p521_signatures_verify_and_tampering_fails() {
        let sk = p521::ecdsa::SigningKey::from_slice(&[0x01; 66]).unwrap();
        let vk = p521::ecdsa::VerifyingKey::from(&sk);
        let point = vk.to_encoded_point(false);
        let sig: p521::ecdsa::Signature = sk.sign(b"handshake transcript");
        let der = sig.to_der();
        assert!(P521_SHA512
            .verify_signature(point.as_bytes(), b"handshake transcript", der.as_bytes())
            .is_ok());
        assert!(P521_SHA512
            .verify_signature(point.as_bytes(), b"other", der.as_bytes())
            .is_err());
    }

    #[test]
    fn server_config_offers_p521_and_h2() {
        let ca = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pem = rcgen::CertificateParams::new(vec!["client".into()])
            .unwrap()
            .self_signed(&ca)
            .unwrap()
            .pem();
        let m = auto_mtls(&pem).unwrap();
        assert_eq!(m.config.alpn_protocols, vec![b"h2".to_vec()]);
        assert!(!m.cert_der.is_empty());
    }
}
