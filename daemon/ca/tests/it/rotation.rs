//! Staged rotation: old and new leaves verify at every stage, new leaves
//! verify for peers that only know the old root, and retired roots stop
//! being trusted.

use std::time::Duration;

use mesh_ca::{
    cross_sign, prepare_rotation, unix_now, CaState, KeyType, LeafRequest, RootCa, RotationError,
    Stage, ValidCaConfig,
};

use crate::{assert_verifies, split_pems, TD};

const HOUR: Duration = Duration::from_secs(3600);

fn rotate(old_type: KeyType, new_type: KeyType) {
    let what = format!("{old_type} -> {new_type}");
    let now = unix_now();
    let cfg = ValidCaConfig::default();
    let old = RootCa::generate_at(TD, old_type, cfg.root_ttl, now).unwrap();
    let mut state = CaState::new(old.clone(), cfg.leaf_ttl, now);
    let old_leaf = state
        .active_signer()
        .unwrap()
        .sign_leaf_at(&LeafRequest::new("web", "dc1", cfg.leaf_ttl), now)
        .unwrap();

    // Pending: the new root is trusted but does not sign yet.
    let new = RootCa::generate_at(TD, new_type, cfg.root_ttl, now).unwrap();
    let new = prepare_rotation(&old, new, &cfg, now).unwrap();
    assert_eq!(
        new.intermediate_certs.len(),
        1,
        "{what}: cross-signed cert attached"
    );
    state.begin_rotation(new.clone(), now, 6 * HOUR).unwrap();
    assert_eq!(state.pending().unwrap().id, new.id);
    assert_eq!(state.active().unwrap().id, old.id);
    assert_eq!(state.active_signer().unwrap().root_id(), old.id);
    assert_verifies(
        &old_leaf.cert_pem,
        &state.trust_bundle(),
        now,
        true,
        &format!("{what}: old leaf while pending"),
    );

    // Active: the new root signs; both generations of leaves verify.
    let old_signer = state.active_signer().unwrap();
    state.activate(now).unwrap();
    assert!(
        !old_signer.is_for(state.active().unwrap()),
        "{what}: signer goes stale on activation"
    );
    assert_eq!(state.active().unwrap().id, new.id);
    let new_leaf = state
        .active_signer()
        .unwrap()
        .sign_leaf_at(&LeafRequest::new("web", "dc1", cfg.leaf_ttl), now)
        .unwrap();
    assert_eq!(
        split_pems(&new_leaf.cert_pem).len(),
        2,
        "{what}: leaf + cross-signed cert"
    );
    let bundle = state.trust_bundle();
    assert_verifies(
        &old_leaf.cert_pem,
        &bundle,
        now,
        true,
        &format!("{what}: old leaf while active"),
    );
    assert_verifies(
        &new_leaf.cert_pem,
        &bundle,
        now,
        true,
        &format!("{what}: new leaf while active"),
    );

    // A peer that never fetched the new bundle: only the old root + cross-signed cert.
    let old_only = vec![old.root_cert.clone(), new.intermediate_certs[0].clone()];
    assert_verifies(
        &new_leaf.cert_pem,
        &old_only,
        now,
        true,
        &format!("{what}: new leaf, old bundle"),
    );
    assert_verifies(
        &new_leaf.cert_pem,
        std::slice::from_ref(&old.root_cert),
        now,
        true,
        &format!("{what}: new leaf, old root only"),
    );

    // Retired: not before 2 × LeafCertTTL, then the old root leaves the bundle.
    let due = now + 2 * cfg.leaf_ttl.as_secs() as i64;
    assert!(state.retire_due(due - 1).is_empty());
    assert_eq!(state.in_stage(Stage::Retired).count(), 1);
    let active_signer = state.active_signer().unwrap();
    assert!(active_signer.is_for(state.active().unwrap()));
    assert_eq!(state.retire_due(due), vec![old.id.clone()]);
    assert!(
        !active_signer.is_for(state.active().unwrap()),
        "{what}: chain changed when the cross cert went"
    );
    assert!(state.rotation.is_none());
    let bundle = state.trust_bundle();
    assert_eq!(
        bundle,
        vec![state.active().unwrap().root_cert.clone()],
        "{what}: cross cert dropped with its issuer"
    );
    assert_verifies(
        &old_leaf.cert_pem,
        &bundle,
        now,
        false,
        &format!("{what}: old leaf after retire"),
    );
    let fresh = state
        .active_signer()
        .unwrap()
        .sign_leaf_at(&LeafRequest::new("db", "dc1", cfg.leaf_ttl), now)
        .unwrap();
    assert_eq!(split_pems(&fresh.cert_pem).len(), 1);
    assert_verifies(
        &new_leaf.cert_pem,
        &bundle,
        now,
        true,
        &format!("{what}: new leaf after retire"),
    );
    assert_verifies(
        &fresh.cert_pem,
        &bundle,
        now,
        true,
        &format!("{what}: fresh leaf after retire"),
    );
}

#[test]
fn ec_to_ec_rotation() {
    rotate(KeyType::EcP256, KeyType::EcP256);
}

#[test]
fn key_type_changes_cross_sign_safely() {
    rotate(KeyType::Rsa2048, KeyType::EcP256);
    rotate(KeyType::EcP256, KeyType::EcP384);
}

#[test]
fn rotation_to_a_user_root_with_intermediate() {
    let now = unix_now();
    let cfg = ValidCaConfig::default();
    let old = RootCa::generate_at(TD, KeyType::EcP256, cfg.root_ttl, now).unwrap();
    let user = RootCa::from_user(
        include_str!("../fixtures/sec1.crt"),
        include_str!("../fixtures/sec1.key"),
        TD,
    )
    .unwrap();
    let new = prepare_rotation(&old, user, &cfg, now).unwrap();
    let mut state = CaState::new(old.clone(), cfg.leaf_ttl, now);
    state.begin_rotation(new, now, HOUR).unwrap();
    state.activate(now).unwrap();
    let leaf = state
        .active_signer()
        .unwrap()
        .sign_leaf_at(&LeafRequest::new("web", "dc1", HOUR), now)
        .unwrap();
    assert_eq!(
        split_pems(&leaf.cert_pem).len(),
        3,
        "leaf + intermediate + cross-signed root"
    );
    assert_verifies(
        &leaf.cert_pem,
        std::slice::from_ref(&old.root_cert),
        now,
        true,
        "new leaf, old root only",
    );
    assert_verifies(
        &leaf.cert_pem,
        &state.trust_bundle(),
        now,
        true,
        "new leaf, full bundle",
    );
}

#[test]
fn retire_now_and_abort() {
    let now = unix_now();
    let cfg = ValidCaConfig::default();
    let old = RootCa::generate_at(TD, KeyType::EcP256, cfg.root_ttl, now).unwrap();
    let mut state = CaState::new(old.clone(), cfg.leaf_ttl, now);
    let new = prepare_rotation(
        &old,
        RootCa::generate_at(TD, KeyType::EcP256, cfg.root_ttl, now).unwrap(),
        &cfg,
        now,
    )
    .unwrap();

    state.begin_rotation(new.clone(), now, HOUR).unwrap();
    assert!(matches!(
        state.begin_rotation(new.clone(), now, HOUR),
        Err(RotationError::InProgress(_))
    ));
    state.abort_rotation().unwrap();
    assert_eq!(state.trust_bundle(), vec![old.root_cert.clone()]);
    assert_eq!(state.activate(now), Err(RotationError::NoPendingRoot));

    state.begin_rotation(new, now, HOUR).unwrap();
    state.activate(now).unwrap();
    assert_eq!(state.retire_now().len(), 1);
    assert_eq!(state.roots.len(), 1);
}

#[test]
fn cross_signed_cert_has_new_subject_and_old_issuer() {
    let now = unix_now();
    let old = RootCa::generate_at(TD, KeyType::EcP256, 1000 * HOUR, now).unwrap();
    let new = RootCa::generate_at(TD, KeyType::EcP256, 2000 * HOUR, now).unwrap();
    let pem = cross_sign(&old, &new, now).unwrap();
    let der = |p: &str| ::pem::parse(p).unwrap().into_contents();
    let (cross_der, old_der, new_der) = (der(&pem), der(&old.root_cert), der(&new.root_cert));
    let (_, cross) = x509_parser::parse_x509_certificate(&cross_der).unwrap();
    let (_, o) = x509_parser::parse_x509_certificate(&old_der).unwrap();
    let (_, n) = x509_parser::parse_x509_certificate(&new_der).unwrap();
    assert_eq!(cross.subject().as_raw(), n.subject().as_raw());
    assert_eq!(cross.issuer().as_raw(), o.subject().as_raw());
    assert_eq!(cross.public_key().raw, n.public_key().raw);
    assert!(cross.is_ca());
    assert_eq!(
        cross.validity().not_after.timestamp(),
        old.not_after,
        "never outlives the old root"
    );
    cross.verify_signature(Some(o.public_key())).unwrap();
}
