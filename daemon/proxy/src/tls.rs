//! rustls configuration: TLS 1.3 only, ring provider, certificates and trust
//! read from the *current* snapshot at every handshake.
//!
//! Root rotation and leaf renewal therefore need no restart: new handshakes
//! see the new material, established connections keep their keys.

use std::io;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, Resumption};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    ServerConfig, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::spiffe::{spiffe_id_of, SpiffeId};
use crate::state::{Current, Material};
use crate::Error;

/// Server side of the public listener: client cert required, checked against current roots.
pub(crate) fn server_config(current: &Current) -> Arc<ServerConfig> {
    let mut cfg = ServerConfig::builder_with_provider(current.provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3")
        .with_client_cert_verifier(Arc::new(ClientVerifier {
            current: current.clone(),
        }))
        .with_cert_resolver(Arc::new(LeafResolver {
            current: current.clone(),
        }));
    // No resumption: every connection proves its identity against current roots.
    cfg.session_storage = Arc::new(NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    Arc::new(cfg)
}

/// Server side of a gateway listener that callers outside the mesh reach:
/// no client certificate, this proxy's current leaf (whose DNS SANs name
/// the listener's hosts), TLS 1.2 or 1.3 as those callers speak.
pub(crate) fn gateway_server_config(current: &Current) -> Arc<ServerConfig> {
    let mut cfg = ServerConfig::builder_with_provider(current.provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(LeafResolver {
            current: current.clone(),
        }));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// [`gateway_server_config`] presenting a certificate from files instead of
/// the leaf. The files are read for each connection, so replacing them
/// needs no restart.
pub(crate) fn gateway_file_config(
    current: &Current,
    cert_file: &str,
    key_file: &str,
) -> io::Result<Arc<ServerConfig>> {
    let (chain, key) = certificate_files(cert_file, key_file)?;
    let mut cfg = ServerConfig::builder_with_provider(current.provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| io::Error::other(format!("CertFile {cert_file}: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A PEM certificate chain and its key, read from files; errors name the
/// field and the file.
pub(crate) fn certificate_files(
    cert_file: &str,
    key_file: &str,
) -> io::Result<(
    Vec<CertificateDer<'static>>,
    rustls_pki_types::PrivateKeyDer<'static>,
)> {
    use rustls_pki_types::pem::PemObject;
    let bad = |what: &str, file: &str, e: String| io::Error::other(format!("{what} {file}: {e}"));
    let chain = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| bad("CertFile", cert_file, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("CertFile", cert_file, e.to_string()))?;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| bad("KeyFile", key_file, e.to_string()))?;
    Ok((chain, key))
}

/// Client side of an upstream connection that must reach `expected` (a
/// SPIFFE ID), sending SNI when `sni` (to a terminating gateway, which
/// picks the service by it).
pub(crate) fn client_config_with_sni(
    current: &Current,
    expected: &str,
    sni: bool,
) -> Arc<ClientConfig> {
    let mut cfg = ClientConfig::builder_with_provider(current.provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ServerVerifier {
            current: current.clone(),
            expected: expected.to_string(),
        }))
        .with_client_cert_resolver(Arc::new(LeafResolver {
            current: current.clone(),
        }));
    cfg.enable_sni = sni;
    cfg.resumption = Resumption::disabled();
    Arc::new(cfg)
}

/// The server name we pass to rustls; SNI is off and identity is checked by SPIFFE ID.
pub(crate) fn server_name(address: &str) -> ServerName<'static> {
    ServerName::try_from(address.to_string())
        .unwrap_or_else(|_| ServerName::try_from("mesh.invalid").expect("valid name"))
}

/// Verifies `end_entity` chains to the current roots for `usage`.
fn verify_chain(
    m: &Material,
    provider: &rustls::crypto::CryptoProvider,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    usage: webpki::KeyUsage,
) -> Result<(), rustls::Error> {
    let cert = webpki::EndEntityCert::try_from(end_entity).map_err(pki_error)?;
    let mut chain: Vec<CertificateDer<'_>> = intermediates.to_vec();
    chain.extend(m.roots_der.iter().cloned());
    cert.verify_for_usage(
        provider.signature_verification_algorithms.all,
        &m.anchors,
        &chain,
        now,
        usage,
        None,
        None,
    )
    .map(|_| ())
    .map_err(pki_error)
}

fn pki_error(e: webpki::Error) -> rustls::Error {
    use webpki::Error as W;
    let ce = match e {
        W::CertExpired { .. } => CertificateError::Expired,
        W::CertNotValidYet { .. } => CertificateError::NotValidYet,
        W::UnknownIssuer => CertificateError::UnknownIssuer,
        W::CertRevoked => CertificateError::Revoked,
        W::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        e => CertificateError::Other(OtherError(Arc::new(e))),
    };
    rustls::Error::InvalidCertificate(ce)
}

fn identity_error(expected: String, got: Option<String>) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
        Error::Identity { expected, got },
    ))))
}

// === impl ClientVerifier ===

/// Checks client certificates of the public listener.
#[derive(Debug)]
struct ClientVerifier {
    current: Current,
}

impl ClientCertVerifier for ClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let m = self.current.get();
        verify_chain(
            &m,
            &self.current.provider,
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::client_auth(),
        )?;
        let got = spiffe_id_of(end_entity);
        match got.as_deref().and_then(SpiffeId::parse) {
            Some(id) if id.trust_domain == m.snap.trust_domain => {
                Ok(ClientCertVerified::assertion())
            }
            _ => Err(identity_error(
                format!("a service in trust domain {}", m.snap.trust_domain),
                got,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.current.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.current.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        let algs = &self.current.provider.signature_verification_algorithms;
        algs.supported_schemes()
    }
}

// === impl ServerVerifier ===

/// Checks an upstream sidecar's certificate: current roots and the exact SPIFFE ID.
#[derive(Debug)]
struct ServerVerifier {
    current: Current,
    expected: String,
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let m = self.current.get();
        verify_chain(
            &m,
            &self.current.provider,
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
        )?;
        let got = spiffe_id_of(end_entity);
        if got.as_deref() == Some(self.expected.as_str()) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(identity_error(self.expected.clone(), got))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.current.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.current.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        let algs = &self.current.provider.signature_verification_algorithms;
        algs.supported_schemes()
    }
}

// === impl LeafResolver ===

/// Presents the current leaf, on both the server and the client side.
#[derive(Debug)]
struct LeafResolver {
    current: Current,
}

impl ResolvesServerCert for LeafResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let m = self.current.get();
        if m.linked.is_empty() {
            return m.leaf.clone();
        }
        // A terminating gateway answers as the linked service the caller names.
        m.linked_for(hello.server_name())
            .and_then(|l| l.leaf.clone())
    }
}

impl ResolvesClientCert for LeafResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.current.get().leaf.clone()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

// === handshake failure reasons ===

/// A short, stable label for why a handshake failed (metrics and logs).
pub(crate) fn failure_reason(e: &io::Error) -> &'static str {
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return match e.kind() {
            io::ErrorKind::TimedOut => "timeout",
            _ => "io",
        };
    };
    match tls {
        rustls::Error::NoCertificatesPresented => "no_client_cert",
        rustls::Error::InvalidCertificate(ce) => match ce {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired",
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "not_yet_valid"
            }
            CertificateError::UnknownIssuer => "unknown_ca",
            CertificateError::Other(OtherError(inner))
                if inner.downcast_ref::<Error>().is_some() =>
            {
                "wrong_identity"
            }
            _ => "bad_certificate",
        },
        rustls::Error::AlertReceived(_) => "alert_received",
        rustls::Error::PeerIncompatible(_) => "incompatible",
        _ => "other",
    }
}

/// A sentence for logs saying why a handshake failed.
pub(crate) fn describe_failure(e: &io::Error) -> String {
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return e.to_string();
    };
    match tls {
        rustls::Error::NoCertificatesPresented => "peer presented no client certificate".into(),
        rustls::Error::InvalidCertificate(ce) => match ce {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "peer certificate has expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "peer certificate is not valid yet".into()
            }
            CertificateError::UnknownIssuer => {
                "peer certificate is not signed by a current root (unknown CA or another cluster)"
                    .into()
            }
            CertificateError::Other(OtherError(inner)) => format!("peer certificate: {inner}"),
            other => format!("peer certificate rejected: {other:?}"),
        },
        other => other.to_string(),
    }
}
