//! Tests of leaf and CSR signing.

use super::*;
use crate::key::KeyType;
use crate::verify::{verify_leaf, VerifyPurpose};
use x509_parser::extensions::{GeneralName, ParsedExtension};

const TD: &str = "11111111-2222-3333-4444-555555555555.consul";
const NOW: i64 = 1_800_000_000;
const HOUR: Duration = Duration::from_secs(3600);

fn root(kt: KeyType, ttl: Duration) -> RootCa {
    RootCa::generate_at(TD, kt, ttl, NOW).unwrap()
}

fn first_der(pem_text: &str) -> Vec<u8> {
    crate::inspect::pem_certs(pem_text, "leaf")
        .unwrap()
        .remove(0)
}

#[test]
fn leaf_has_the_mesh_profile() {
    let root = root(KeyType::EcP256, 100 * HOUR);
    let root_info = CertInfo::from_pem(&root.root_cert, "root").unwrap();
    let signer = Signer::new(&root).unwrap();
    let leaf = signer
        .sign_leaf_at(&LeafRequest::new("web", "dc1", 72 * HOUR), NOW)
        .unwrap();
    assert_eq!(
        leaf.spiffe_id,
        format!("spiffe://{TD}/ns/default/dc/dc1/svc/web")
    );
    assert_eq!(
        (leaf.valid_after, leaf.valid_before),
        (NOW - 60, NOW + 72 * 3600)
    );
    assert_eq!(leaf.root_id, root.id);
    assert!(leaf
        .private_key_pem
        .as_ref()
        .unwrap()
        .expose()
        .contains("BEGIN PRIVATE KEY"));

    let der = first_der(&leaf.cert_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    let uris: Vec<_> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(uris, vec![leaf.spiffe_id.clone()]);
    assert!(!cert.is_ca());
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    assert_eq!(colon_hex(cert.raw_serial()), leaf.serial);
    let aki = cert
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        });
    assert_eq!(aki, root_info.ski);
    assert_eq!(cert.issuer().as_raw(), root_info.subject_raw.as_slice());
    let key_info = cert.public_key();
    assert_eq!(
        CertInfo::from_der(&der, "leaf").unwrap().key,
        CertKey::Supported(KeyType::EcP256)
    );
    assert_eq!(key_info.subject_public_key.data.len(), 65);

    verify_leaf(
        &leaf.cert_pem,
        std::slice::from_ref(&root.root_cert),
        NOW,
        VerifyPurpose::Both,
    )
    .unwrap();
}

#[test]
fn leaves_from_every_root_type_verify() {
    for kt in [KeyType::EcP256, KeyType::EcP384, KeyType::Rsa2048] {
        let root = root(kt, 100 * HOUR);
        let leaf = Signer::new(&root)
            .unwrap()
            .sign_leaf_at(&LeafRequest::new("db", "east-1", HOUR), NOW)
            .unwrap();
        verify_leaf(
            &leaf.cert_pem,
            std::slice::from_ref(&root.root_cert),
            NOW,
            VerifyPurpose::Both,
        )
        .unwrap_or_else(|e| panic!("{kt}: {e}"));
    }
}

#[test]
fn leaf_does_not_outlive_its_root_and_serials_differ() {
    let root = root(KeyType::EcP256, 10 * HOUR);
    let signer = Signer::new(&root).unwrap();
    let a = signer
        .sign_leaf_at(&LeafRequest::new("web", "dc1", 72 * HOUR), NOW)
        .unwrap();
    let b = signer
        .sign_leaf_at(&LeafRequest::new("web", "dc1", 72 * HOUR), NOW)
        .unwrap();
    assert_eq!(a.valid_before, root.not_after);
    assert_ne!(a.serial, b.serial);
    assert!(verify_leaf(
        &a.cert_pem,
        std::slice::from_ref(&root.root_cert),
        root.not_after + 1,
        VerifyPurpose::Server
    )
    .is_err());
}

#[test]
fn dns_sans_are_optional() {
    let root = root(KeyType::EcP256, 10 * HOUR);
    let mut req = LeafRequest::new("web", "dc1", HOUR);
    req.dns_sans.push(default_dns_san("web", TD));
    assert_eq!(req.dns_sans[0], "web.svc.default.11111111.consul");
    let leaf = Signer::new(&root).unwrap().sign_leaf_at(&req, NOW).unwrap();
    let der = first_der(&leaf.cert_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let names = &cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names;
    assert!(names.contains(&GeneralName::DNSName("web.svc.default.11111111.consul")));
}

#[test]
fn bad_names_and_ttls_are_rejected() {
    let signer = Signer::new(&root(KeyType::EcP256, 10 * HOUR)).unwrap();
    for (svc, dc) in [
        ("", "dc1"),
        ("web/admin", "dc1"),
        ("web", "dc 1"),
        ("wéb", "dc1"),
    ] {
        let err = signer
            .sign_leaf_at(&LeafRequest::new(svc, dc, HOUR), NOW)
            .unwrap_err();
        assert!(
            matches!(err, CaError::InvalidName { .. }),
            "{svc:?} {dc:?}: {err}"
        );
    }
    let err = signer
        .sign_leaf_at(&LeafRequest::new("web", "dc1", Duration::ZERO), NOW)
        .unwrap_err();
    assert!(matches!(err, CaError::InvalidTtl { .. }));
}

#[test]
fn csr_for_the_right_identity_is_signed() {
    let root = root(KeyType::EcP256, 10 * HOUR);
    let signer = Signer::new(&root).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    let id = mesh_types::SpiffeId::service(TD, "dc1", "api").to_string();
    params.subject_alt_names = vec![SanType::URI(id.as_str().try_into().unwrap())];
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let leaf = signer
        .sign_csr_at(&csr, &LeafRequest::new("api", "dc1", HOUR), NOW)
        .unwrap();
    assert!(leaf.private_key_pem.is_none());
    assert_eq!(leaf.spiffe_id, id);
    let der = first_der(&leaf.cert_pem);
    assert_eq!(
        CertInfo::from_der(&der, "leaf").unwrap().public_key,
        key.public_key_raw()
    );
    verify_leaf(
        &leaf.cert_pem,
        std::slice::from_ref(&root.root_cert),
        NOW,
        VerifyPurpose::Both,
    )
    .unwrap();

    // Same CSR, different service: refused.
    let err = signer
        .sign_csr_at(&csr, &LeafRequest::new("web", "dc1", HOUR), NOW)
        .unwrap_err();
    assert!(matches!(err, CaError::CsrIdentity { .. }), "{err}");
    let err = signer
        .sign_csr_at("garbage", &LeafRequest::new("api", "dc1", HOUR), NOW)
        .unwrap_err();
    assert!(matches!(err, CaError::Csr { .. }), "{err}");
}

#[test]
fn signer_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Signer>();
}

#[test]
fn a_generated_csr_is_signed_for_its_own_identity_only() {
    let signer = Signer::new(&root(KeyType::EcP256, 10 * HOUR)).unwrap();
    let id = mesh_types::SpiffeId::service(TD, "dc1", "api").to_string();
    let (key, csr) = key_and_csr(&id).unwrap();
    let leaf = signer
        .sign_csr_at(&csr, &LeafRequest::new("api", "dc1", HOUR), NOW)
        .unwrap();
    assert!(
        leaf.private_key_pem.is_none(),
        "the key never leaves its owner"
    );
    assert_eq!(leaf.spiffe_id, id);
    assert!(key.expose().contains("PRIVATE KEY"));
    let err = signer
        .sign_csr_at(&csr, &LeafRequest::new("web", "dc1", HOUR), NOW)
        .unwrap_err();
    assert!(matches!(err, CaError::CsrIdentity { .. }), "{err}");
}

#[test]
fn an_agent_csr_gets_the_agent_identity_and_only_the_names_the_server_allows() {
    let root = root(KeyType::EcP256, 10 * HOUR);
    let signer = Signer::new(&root).unwrap();
    let key = KeyPair::generate().unwrap();
    let id = format!("spiffe://{TD}/agent/client/dc/dc1/id/node-1");
    let csr_with = |dns: &[&str]| {
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(id.as_str().try_into().unwrap())];
        for d in dns {
            params
                .subject_alt_names
                .push(SanType::DnsName((*d).try_into().unwrap()));
        }
        params.serialize_request(&key).unwrap().pem().unwrap()
    };
    let mut req = LeafRequest::new("c1", "dc1", HOUR);
    req.agent_id = Some("node-1".into());
    req.dns_sans = vec!["client.dc1.consul".into(), "localhost".into()];
    let leaf = signer
        .sign_csr_at(&csr_with(&["localhost"]), &req, NOW)
        .unwrap();
    assert_eq!(leaf.spiffe_id, id);
    let err = signer
        .sign_csr_at(&csr_with(&["server.dc1.consul"]), &req, NOW)
        .unwrap_err();
    assert!(err.to_string().contains("server.dc1.consul"), "{err}");
}
