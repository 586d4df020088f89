//! Leaves from every kind of root verify against the root's trust bundle.

use std::time::Duration;

use mesh_ca::{default_dns_san, unix_now, CaState, KeyType, LeafRequest, RootCa, Signer};

use crate::{assert_verifies, split_pems, TD};

const HOUR: Duration = Duration::from_secs(3600);

fn check_root(root: &RootCa, what: &str) {
    let now = unix_now();
    let state = CaState::new(root.clone(), 72 * HOUR, now);
    let bundle = state.trust_bundle();
    let signer = state.active_signer().unwrap();
    for svc in ["web", "db-primary", "api_v2"] {
        let mut req = LeafRequest::new(svc, "dc1", 72 * HOUR);
        req.dns_sans.push(default_dns_san(svc, TD));
        let leaf = signer.sign_leaf_at(&req, now).unwrap();
        assert_eq!(
            leaf.spiffe_id,
            format!("spiffe://{TD}/ns/default/dc/dc1/svc/{svc}")
        );
        assert_verifies(
            &leaf.cert_pem,
            &bundle,
            now,
            true,
            &format!("{what} leaf {svc}"),
        );
    }
}

#[test]
fn generated_roots_of_every_type() {
    for kt in [KeyType::EcP256, KeyType::EcP384, KeyType::Rsa2048] {
        let root = RootCa::generate(TD, kt, 87600 * HOUR).unwrap();
        check_root(&root, &kt.to_string());
    }
}

#[test]
fn user_roots_with_and_without_spiffe_san() {
    let fixtures = [
        (
            include_str!("../fixtures/sec1.crt"),
            include_str!("../fixtures/sec1.key"),
        ),
        (
            include_str!("../fixtures/pkcs1.crt"),
            include_str!("../fixtures/pkcs1.key"),
        ),
    ];
    for (cert, key) in fixtures {
        let root = RootCa::from_user(cert, key, TD).unwrap();
        assert!(
            root.signing_cert.is_some(),
            "no SPIFFE SAN: signs through an intermediate"
        );
        let leaf = Signer::new(&root)
            .unwrap()
            .sign_leaf(&LeafRequest::new("web", "dc1", HOUR))
            .unwrap();
        assert_eq!(split_pems(&leaf.cert_pem).len(), 2, "leaf + intermediate");
        // Peers that trust only the user's root accept the leaf.
        assert_verifies(
            &leaf.cert_pem,
            std::slice::from_ref(&root.root_cert),
            unix_now(),
            true,
            "user root",
        );
        check_root(&root, "user root");
    }
}

#[test]
fn leaf_from_another_cluster_is_rejected() {
    let ours = RootCa::generate(TD, KeyType::EcP256, 87600 * HOUR).unwrap();
    let theirs = RootCa::generate(TD, KeyType::EcP256, 87600 * HOUR).unwrap();
    let leaf = Signer::new(&theirs)
        .unwrap()
        .sign_leaf(&LeafRequest::new("web", "dc1", HOUR))
        .unwrap();
    assert_verifies(
        &leaf.cert_pem,
        std::slice::from_ref(&ours.root_cert),
        unix_now(),
        false,
        "foreign leaf",
    );
}
