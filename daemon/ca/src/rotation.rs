//! Root rotation: cross-signing the new root with the active one, and the
//! preflight checks that refuse rotations which would break connections.
//!
//! Key-type changes (EC ↔ RSA, P-256 ↔ P-384) are allowed: ring signs a
//! certificate for any supported public key with any supported issuer key,
//! and rustls-webpki and OpenSSL verify such mixed chains (the tests check
//! both). Consul refuses some of these without `ForceWithoutCrossSigning`
//! because of its providers; here the deciding check is a self-test:
//! `prepare_rotation` signs a probe leaf with the new root and verifies it
//! against a bundle holding only the active root plus the cross-signed
//! certificate. If that fails, the rotation is refused unless
//! `ForceWithoutCrossSigning` is set.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue, IsCa, Issuer,
    KeyIdMethod, KeyUsagePurpose, SanType, SerialNumber,
};
use x509_parser::der_parser::asn1_rs::Tag;

use crate::config::ValidCaConfig;
use crate::error::{CaError, RotationError};
use crate::inspect::CertInfo;
use crate::root::RootCa;
use crate::signer::{random_serial, LeafRequest, Signer};
use crate::verify::{verify_leaf, VerifyPurpose};
use crate::{rfc3339, BACKDATE};

/// Issues a certificate with the *new* root's subject, key and SKI, signed by the *active* root; PEM.
///
/// Leaves of the new root carry it in their chain, so peers that only trust
/// the active root accept them. Valid from `now` until the earlier of the two
/// roots' expiries.
pub fn cross_sign(active: &RootCa, new: &RootCa, now: i64) -> Result<String, CaError> {
    let active_info = CertInfo::from_pem(&active.root_cert, "active root")?;
    let new_info = CertInfo::from_pem(&new.root_cert, "new root")?;
    let active_key = active.key_pair()?;
    let issuer =
        Issuer::from_ca_cert_der(&active_info.der.clone().into(), &active_key).map_err(|e| {
            CaError::UnsupportedSubject {
                reason: e.to_string(),
            }
        })?;
    let public_key = rcgen::SubjectPublicKeyInfo::from_der(&new_info.spki)?;

    let mut params = CertificateParams::default();
    params.distinguished_name = subject_of(&new_info.der)?;
    params.key_identifier_method = match &new_info.ski {
        Some(ski) => KeyIdMethod::PreSpecified(ski.clone()),
        None => KeyIdMethod::Sha256,
    };
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    for uri in new_info.spiffe_uris() {
        params.subject_alt_names.push(SanType::URI(uri.try_into()?));
    }
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(SerialNumber::from_slice(&random_serial(16)));
    let at = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t).map_err(|e| CaError::InvalidTtl {
            reason: e.to_string(),
        })
    };
    params.not_before = at(now - BACKDATE.as_secs() as i64)?;
    params.not_after = at(active.not_after.min(new.not_after))?;

    let cert = params.signed_by(&public_key, &issuer)?;
    let info = CertInfo::from_der(cert.der(), "cross-signed certificate")?;
    if info.subject_raw != new_info.subject_raw || info.issuer_raw != active_info.subject_raw {
        return Err(CaError::UnsupportedSubject {
            reason: "the cross-signed certificate's names do not match the roots byte for byte"
                .into(),
        });
    }
    Ok(cert.pem())
}

/// Refuses a rotation from `active` to `new` that would break leaves or peers.
///
/// Checks: same trust domain; not the same root; `new` valid now; `new` lives
/// at least until `now + 2 × LeafCertTTL` (leaves issued during the rotation
/// and the retirement window of the old root). Key-type changes are allowed
/// (see the module docs); the cross-sign self-test runs in [`prepare_rotation`].
pub fn preflight(
    active: &RootCa,
    new: &RootCa,
    cfg: &ValidCaConfig,
    now: i64,
) -> Result<(), RotationError> {
    if new.trust_domain != active.trust_domain {
        return Err(RotationError::TrustDomainChanged {
            active: active.trust_domain.clone(),
            new: new.trust_domain.clone(),
        });
    }
    if new.id == active.id {
        return Err(RotationError::SameRoot(new.id.clone()));
    }
    if now < new.not_before {
        return Err(RotationError::NewRootNotYetValid {
            not_before: rfc3339(new.not_before),
        });
    }
    if now >= new.not_after {
        return Err(RotationError::NewRootExpired {
            not_after: rfc3339(new.not_after),
        });
    }
    let needed = now.saturating_add(2 * cfg.leaf_ttl.as_secs() as i64);
    if new.not_after < needed {
        return Err(RotationError::NewRootExpiresTooSoon {
            not_after: rfc3339(new.not_after),
            needed: rfc3339(needed),
        });
    }
    Ok(())
}

/// Runs [`preflight`], cross-signs `new` with `active` (unless ForceWithoutCrossSigning),
/// self-tests the result, and returns `new` ready for [`crate::CaState::begin_rotation`].
pub fn prepare_rotation(
    active: &RootCa,
    mut new: RootCa,
    cfg: &ValidCaConfig,
    now: i64,
) -> Result<RootCa, RotationError> {
    preflight(active, &new, cfg, now)?;
    new.self_test(now)?;
    if cfg.force_without_cross_signing {
        return Ok(new);
    }
    let cross =
        cross_sign(active, &new, now).map_err(|e| RotationError::CrossSign(e.to_string()))?;
    new.intermediate_certs.push(cross);
    let probe = Signer::new(&new)?.sign_leaf_at(
        &LeafRequest::new("mesh-ca-rotation-probe", "dc1", cfg.leaf_ttl),
        now,
    )?;
    verify_leaf(
        &probe.cert_pem,
        std::slice::from_ref(&active.root_cert),
        now,
        VerifyPurpose::Both,
    )
    .map_err(|e| RotationError::CrossSign(e.to_string()))?;
    Ok(new)
}

/// The subject of a DER certificate as an rcgen name, refusing what rcgen cannot reproduce.
fn subject_of(der: &[u8]) -> Result<DistinguishedName, CaError> {
    let unsupported = |reason: &str| CaError::UnsupportedSubject {
        reason: reason.into(),
    };
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| CaError::CertPem {
        field: "new root",
        reason: e.to_string(),
    })?;
    let mut dn = DistinguishedName::new();
    for rdn in cert.subject().iter() {
        let mut attrs = rdn.iter();
        let (Some(attr), None) = (attrs.next(), attrs.next()) else {
            return Err(unsupported("multi-valued RDN"));
        };
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or_else(|| unsupported("odd attribute OID"))?
            .collect();
        let ty = DnType::from_oid(&oid);
        if dn.get(&ty).is_some() {
            return Err(unsupported("repeated attribute type"));
        }
        let data = attr.attr_value().data;
        let text =
            || std::str::from_utf8(data).map_err(|_| unsupported("attribute is not valid text"));
        let value = match attr.attr_value().header.tag() {
            Tag::Utf8String => DnValue::Utf8String(text()?.to_string()),
            Tag::PrintableString => DnValue::PrintableString(text()?.try_into()?),
            Tag::Ia5String => DnValue::Ia5String(text()?.try_into()?),
            Tag::T61String => DnValue::TeletexString(text()?.try_into()?),
            // BMPString and UniversalString cannot be built with rcgen's public API.
            _ => return Err(unsupported("attribute has an unsupported string type")),
        };
        dn.push(ty, value);
    }
    Ok(dn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyType;
    use std::time::Duration;

    const TD: &str = "td.consul";
    const NOW: i64 = 1_800_000_000;
    const HOUR: Duration = Duration::from_secs(3600);

    fn root_at(td: &str, ttl: Duration, now: i64) -> RootCa {
        RootCa::generate_at(td, KeyType::EcP256, ttl, now).unwrap()
    }

    #[test]
    fn preflight_refuses_unsafe_rotations() {
        let cfg = ValidCaConfig::default(); // LeafCertTTL 72h
        let active = root_at(TD, 1000 * HOUR, NOW);
        let ok = root_at(TD, 1000 * HOUR, NOW);
        preflight(&active, &ok, &cfg, NOW).unwrap();

        let other = root_at("other.consul", 1000 * HOUR, NOW);
        assert!(matches!(
            preflight(&active, &other, &cfg, NOW),
            Err(RotationError::TrustDomainChanged { .. })
        ));
        assert!(matches!(
            preflight(&active, &active, &cfg, NOW),
            Err(RotationError::SameRoot(_))
        ));
        let future = root_at(TD, 1000 * HOUR, NOW + 3600);
        assert!(matches!(
            preflight(&active, &future, &cfg, NOW),
            Err(RotationError::NewRootNotYetValid { .. })
        ));
        let expired = root_at(TD, HOUR, NOW - 7200);
        assert!(matches!(
            preflight(&active, &expired, &cfg, NOW),
            Err(RotationError::NewRootExpired { .. })
        ));
        // Lives 100h: shorter than 2 × 72h of leaves and retirement window.
        let short = root_at(TD, 100 * HOUR, NOW);
        let err = preflight(&active, &short, &cfg, NOW).unwrap_err();
        assert!(
            matches!(err, RotationError::NewRootExpiresTooSoon { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("2 × LeafCertTTL"));
    }

    #[test]
    fn force_without_cross_signing_skips_the_cross_cert() {
        let mut cfg = ValidCaConfig::default();
        let active = root_at(TD, 1000 * HOUR, NOW);
        cfg.force_without_cross_signing = true;
        let new = prepare_rotation(&active, root_at(TD, 1000 * HOUR, NOW), &cfg, NOW).unwrap();
        assert!(new.intermediate_certs.is_empty());
        cfg.force_without_cross_signing = false;
        let new = prepare_rotation(&active, root_at(TD, 1000 * HOUR, NOW), &cfg, NOW).unwrap();
        assert_eq!(new.intermediate_certs.len(), 1);
    }

    #[test]
    fn cross_sign_preserves_non_ascii_subjects() {
        // A user root whose subject uses UTF8String and PrintableString attributes.
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CountryName,
            DnValue::PrintableString("DE".try_into().unwrap()),
        );
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Bäckerei GmbH");
        params
            .distinguished_name
            .push(DnType::CommonName, "Wurzel CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        params.not_before = time::OffsetDateTime::from_unix_timestamp(NOW - 60).unwrap();
        params.not_after = time::OffsetDateTime::from_unix_timestamp(NOW + 2000 * 3600).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let user =
            RootCa::from_user_checked(&cert.pem(), &key.serialize_pem(), TD, None, NOW).unwrap();
        let active = root_at(TD, 1000 * HOUR, NOW);
        let new = prepare_rotation(&active, user, &ValidCaConfig::default(), NOW).unwrap();
        assert_eq!(new.intermediate_certs.len(), 1);
    }
}
