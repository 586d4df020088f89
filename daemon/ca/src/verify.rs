//! Chain verification with rustls-webpki, as a strict TLS peer would do it:
//! only self-signed bundle certificates are trust anchors; other bundle
//! certificates (cross-signed roots) may serve as intermediates.

use std::time::Duration;

use rustls_pki_types::{CertificateDer, UnixTime};
use webpki::{EndEntityCert, KeyUsage};

use crate::error::CaError;
use crate::inspect::{pem_certs, CertInfo};

/// Which extended key usage the leaf must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyPurpose {
    /// TLS server authentication.
    Server,
    /// TLS client authentication.
    Client,
    /// Both (a mesh leaf is used on both sides of mTLS).
    Both,
}

/// Verifies a leaf chain PEM (leaf first, then intermediates) against trust-bundle PEMs at `now`.
pub fn verify_leaf(
    chain_pem: &str,
    bundle: &[String],
    now: i64,
    purpose: VerifyPurpose,
) -> Result<(), CaError> {
    let chain = pem_certs(chain_pem, "leaf")?;
    let mut anchors_der = Vec::new();
    let mut intermediates: Vec<CertificateDer<'static>> = chain[1..]
        .iter()
        .map(|d| CertificateDer::from(d.clone()))
        .collect();
    for pem in bundle {
        for der in pem_certs(pem, "trust bundle")? {
            let info = CertInfo::from_der(&der, "trust bundle")?;
            if info.subject_raw == info.issuer_raw {
                anchors_der.push(CertificateDer::from(der));
            } else {
                intermediates.push(CertificateDer::from(der));
            }
        }
    }
    let anchors = anchors_der
        .iter()
        .map(|d| {
            webpki::anchor_from_trusted_cert(d)
                .map_err(|e| CaError::Verify(format!("bad trust anchor: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let leaf_der = CertificateDer::from(chain[0].clone());
    let leaf = EndEntityCert::try_from(&leaf_der)
        .map_err(|e| CaError::Verify(format!("bad leaf: {e}")))?;
    let time = UnixTime::since_unix_epoch(Duration::from_secs(now.max(0) as u64));
    let usages: &[KeyUsage] = match purpose {
        VerifyPurpose::Server => &[KeyUsage::server_auth()],
        VerifyPurpose::Client => &[KeyUsage::client_auth()],
        VerifyPurpose::Both => &[KeyUsage::server_auth(), KeyUsage::client_auth()],
    };
    for usage in usages {
        leaf.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &intermediates,
            time,
            usage,
            None,
            None,
        )
        .map_err(|e| CaError::Verify(format!("{e:?}")))?;
    }
    Ok(())
}
