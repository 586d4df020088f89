//! Tests of root generation and user-supplied root validation.

use super::*;
use crate::inspect::CertInfo;
use rcgen::{CertificateParams, DnType, IsCa, KeyPair};

const TD: &str = "11111111-2222-3333-4444-555555555555.consul";
const NOW: i64 = 1_800_000_000;
const DAY: i64 = 86_400;

/// A user CA made with rcgen: `(cert_pem, key_pem)`.
fn rcgen_ca(
    uri: Option<&str>,
    is_ca: bool,
    not_before: i64,
    not_after: i64,
    key: &KeyPair,
) -> (String, String) {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Example Corp");
    params
        .distinguished_name
        .push(DnType::CommonName, "Example Root");
    params.is_ca = if is_ca {
        IsCa::Ca(BasicConstraints::Unconstrained)
    } else {
        IsCa::ExplicitNoCa
    };
    if is_ca {
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    }
    if let Some(uri) = uri {
        params.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
    }
    params.not_before = time::OffsetDateTime::from_unix_timestamp(not_before).unwrap();
    params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).unwrap();
    let cert = params.self_signed(key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn good_user_ca(uri: Option<&str>) -> (String, String) {
    rcgen_ca(
        uri,
        true,
        NOW - DAY,
        NOW + 3650 * DAY,
        &KeyPair::generate().unwrap(),
    )
}

fn user(cert: &str, key: &str) -> Result<RootCa, CaError> {
    RootCa::from_user_checked(cert, key, TD, None, NOW)
}

#[test]
fn generated_root_is_a_spiffe_ca() {
    for kt in [KeyType::EcP256, KeyType::EcP384] {
        let root =
            RootCa::generate_at(TD, kt, Duration::from_secs(3650 * DAY as u64), NOW).unwrap();
        let info = CertInfo::from_pem(&root.root_cert, "root").unwrap();
        assert!(info.is_ca && info.key_cert_sign == Some(true));
        assert!(info.is_self_signed());
        assert_eq!(info.uris, vec![format!("spiffe://{TD}")]);
        assert_eq!(root.signing_key_id, colon_hex(info.ski.as_ref().unwrap()));
        assert_eq!(info.key, CertKey::Supported(kt));
        assert_eq!(
            (root.not_before, root.not_after),
            (NOW - 60, NOW + 3650 * DAY)
        );
        assert_eq!(root.id, sha256_id(&info.der));
        assert!(root.serial_number > 0 && !root.user_supplied);
        root.self_test(NOW).unwrap();
    }
}

#[test]
fn generated_roots_have_distinct_subjects() {
    let ttl = Duration::from_secs(DAY as u64);
    let a = CertInfo::from_pem(
        &RootCa::generate_at(TD, KeyType::EcP256, ttl, NOW)
            .unwrap()
            .root_cert,
        "a",
    )
    .unwrap();
    let b = CertInfo::from_pem(
        &RootCa::generate_at(TD, KeyType::EcP256, ttl, NOW)
            .unwrap()
            .root_cert,
        "b",
    )
    .unwrap();
    assert_ne!(a.subject_raw, b.subject_raw);
}

#[test]
fn rsa_root_generates_and_signs() {
    let root =
        RootCa::generate_at(TD, KeyType::Rsa2048, Duration::from_secs(DAY as u64), NOW).unwrap();
    assert_eq!(root.key_type, KeyType::Rsa2048);
    root.self_test(NOW).unwrap();
}

#[test]
fn bad_trust_domain_is_rejected() {
    let err =
        RootCa::generate_at("bad/td", KeyType::EcP256, Duration::from_secs(60), NOW).unwrap_err();
    assert!(matches!(
        err,
        CaError::InvalidName {
            field: "trust domain",
            ..
        }
    ));
}

#[test]
fn user_root_with_spiffe_san_signs_directly() {
    let (cert, key) = good_user_ca(Some(&format!("spiffe://{TD}")));
    let root = user(&cert, &key).unwrap();
    assert!(root.user_supplied && root.signing_cert.is_none());
    assert_eq!(root.key_type, KeyType::EcP256);
}

#[test]
fn user_root_without_spiffe_san_gets_an_intermediate() {
    let (cert, key) = good_user_ca(None);
    let root = user(&cert, &key).unwrap();
    let int = CertInfo::from_pem(root.signing_cert.as_ref().unwrap(), "int").unwrap();
    assert_eq!(int.uris, vec![format!("spiffe://{TD}")]);
    assert!(int.is_ca);
    assert_eq!(root.signing_key_id, colon_hex(int.ski.as_ref().unwrap()));
    assert!(int.not_after <= NOW + 365 * DAY);
}

#[test]
fn openssl_made_roots_with_sec1_and_pkcs1_keys_are_accepted() {
    let sec1 = RootCa::from_user_checked(
        include_str!("../tests/fixtures/sec1.crt"),
        include_str!("../tests/fixtures/sec1.key"),
        TD,
        Some(KeyType::EcP256),
        NOW,
    )
    .unwrap();
    assert!(sec1.signing_cert.is_some());
    let rsa = RootCa::from_user_checked(
        include_str!("../tests/fixtures/pkcs1.crt"),
        include_str!("../tests/fixtures/pkcs1.key"),
        TD,
        None,
        NOW,
    )
    .unwrap();
    assert_eq!(rsa.key_type, KeyType::Rsa2048);
}

#[test]
fn garbage_pem_names_the_field() {
    let (cert, key) = good_user_ca(None);
    let err = user("garbage", &key).unwrap_err();
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
    let err = user(&cert, "garbage").unwrap_err();
    assert!(
        matches!(
            err,
            CaError::KeyPem {
                field: "PrivateKey",
                ..
            }
        ),
        "{err}"
    );
    // A key where the certificate should be, and vice versa.
    assert!(matches!(
        user(&key, &key).unwrap_err(),
        CaError::CertPem { .. }
    ));
    assert!(matches!(
        user(&cert, &cert).unwrap_err(),
        CaError::KeyPem { .. }
    ));
}

#[test]
fn mismatched_key_is_rejected() {
    let (cert, _) = good_user_ca(None);
    let other = KeyPair::generate().unwrap().serialize_pem();
    assert_eq!(user(&cert, &other).unwrap_err(), CaError::KeyMismatch);
    let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
        .unwrap()
        .serialize_pem();
    assert_eq!(user(&cert, &p384).unwrap_err(), CaError::KeyMismatch);
    let rsa = include_str!("../tests/fixtures/pkcs1.key");
    assert_eq!(user(&cert, rsa).unwrap_err(), CaError::KeyMismatch);
}

#[test]
fn non_ca_is_rejected() {
    let (cert, key) = rcgen_ca(
        None,
        false,
        NOW - DAY,
        NOW + DAY,
        &KeyPair::generate().unwrap(),
    );
    let err = user(&cert, &key).unwrap_err();
    assert!(matches!(err, CaError::NotCa { .. }), "{err}");
    assert!(err.to_string().contains("basicConstraints"));
}

#[test]
fn expired_and_future_roots_are_rejected() {
    let key = KeyPair::generate().unwrap();
    let (cert, k) = rcgen_ca(None, true, NOW - 10 * DAY, NOW - DAY, &key);
    assert!(matches!(
        user(&cert, &k).unwrap_err(),
        CaError::Expired {
            what: "RootCert",
            ..
        }
    ));
    let (cert, k) = rcgen_ca(None, true, NOW + DAY, NOW + 10 * DAY, &key);
    assert!(matches!(
        user(&cert, &k).unwrap_err(),
        CaError::NotYetValid {
            what: "RootCert",
            ..
        }
    ));
}

#[test]
fn unsupported_key_type_is_rejected() {
    let err = user(
        include_str!("../tests/fixtures/p521.crt"),
        include_str!("../tests/fixtures/p521.key"),
    )
    .unwrap_err();
    match err {
        CaError::UnsupportedKeyType { key, .. } => assert_eq!(key, "ec P-521"),
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn declared_key_type_must_match() {
    let err = RootCa::from_user_checked(
        include_str!("../tests/fixtures/pkcs1.crt"),
        include_str!("../tests/fixtures/pkcs1.key"),
        TD,
        Some(KeyType::EcP256),
        NOW,
    )
    .unwrap_err();
    assert_eq!(
        err,
        CaError::KeyTypeMismatch {
            declared: "ec 256".into(),
            actual: "rsa 2048".into()
        }
    );
}

#[test]
fn other_trust_domain_is_rejected() {
    let (cert, key) = good_user_ca(Some("spiffe://other.consul"));
    assert!(matches!(
        user(&cert, &key).unwrap_err(),
        CaError::TrustDomainMismatch { .. }
    ));
}

#[test]
fn intermediate_is_not_a_root() {
    let parent =
        RootCa::generate_at(TD, KeyType::EcP256, Duration::from_secs(DAY as u64), NOW).unwrap();
    let parent_key = parent.key_pair().unwrap();
    let issuer = Issuer::from_ca_cert_pem(&parent.root_cert, &parent_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params = ca_params(TD, "int", NOW, Duration::from_secs(DAY as u64)).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    assert_eq!(
        user(&cert.pem(), &key.serialize_pem()).unwrap_err(),
        CaError::NotSelfSigned
    );
}

#[test]
fn debug_never_shows_keys() {
    let (cert, key) = good_user_ca(None);
    let root = user(&cert, &key).unwrap();
    let dbg = format!("{root:?} {:?}", root.private_key);
    assert!(
        !dbg.contains("PRIVATE KEY") && !dbg.contains(&key[30..60]),
        "{dbg}"
    );
    assert!(dbg.contains("<redacted>"));
}

#[test]
fn root_round_trips_through_json_and_postcard() {
    let root =
        RootCa::generate_at(TD, KeyType::EcP256, Duration::from_secs(DAY as u64), NOW).unwrap();
    let json = serde_json::to_string(&root).unwrap();
    assert!(
        json.contains("\"ID\":")
            && json.contains("\"SigningKeyID\":")
            && json.contains("\"RootCert\":")
    );
    assert_eq!(serde_json::from_str::<RootCa>(&json).unwrap(), root);
    let bytes = postcard::to_allocvec(&root).unwrap();
    assert_eq!(postcard::from_bytes::<RootCa>(&bytes).unwrap(), root);
}
