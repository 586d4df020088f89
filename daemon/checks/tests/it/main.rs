//! Integration tests of mesh-checks: every kind of check against real local
//! servers on 127.0.0.1 port 0, thresholds, TTLs, and definition parsing.
//!
//! fixtures/server.{crt,key}: a self-signed P-256 leaf certificate for localhost
//! and 127.0.0.1, valid 100 years, made with
//! `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 36500
//!  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1"
//!  -addext "basicConstraints=critical,CA:FALSE" -addext "extendedKeyUsage=serverAuth"`.

mod grpc;
mod http;
mod parse;
mod script;
mod tcp;
mod thresholds;
mod ttl;

use std::sync::Arc;
use std::time::Duration;

use mesh_checks::{CheckDefinition, CheckKind, CheckRunner, CheckUpdate, RunnerOptions};
use tokio::sync::mpsc;

/// Longest any test waits for something it expects; far above what it takes.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// A definition probing every 50ms, as no parsed definition may (they are raised to 1s).
pub fn fast(id: &str, kind: CheckKind) -> CheckDefinition {
    let mut def = CheckDefinition::new(id, kind);
    def.interval = Duration::from_millis(50);
    def.timeout = Duration::from_secs(5);
    def
}

/// Spawns `def` with scripts enabled; returns the runner and its updates.
pub fn start(def: CheckDefinition) -> (CheckRunner, mpsc::Receiver<CheckUpdate>) {
    let (tx, rx) = mpsc::channel(64);
    let opts = RunnerOptions {
        enable_script_checks: true,
    };
    let runner = CheckRunner::spawn(def, &opts, tx).expect("check starts");
    (runner, rx)
}

/// The next update, or a panic after [`PATIENCE`].
pub async fn next(rx: &mut mpsc::Receiver<CheckUpdate>) -> CheckUpdate {
    match tokio::time::timeout(PATIENCE, rx.recv()).await {
        Ok(Some(update)) => update,
        Ok(None) => panic!("update channel closed"),
        Err(_) => panic!("no check update within {PATIENCE:?}"),
    }
}

/// Updates until one satisfies `done`, returning all of them (the last one satisfies it).
pub async fn until(
    rx: &mut mpsc::Receiver<CheckUpdate>,
    mut done: impl FnMut(&CheckUpdate) -> bool,
) -> Vec<CheckUpdate> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    loop {
        let update = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("condition not met within {PATIENCE:?}; updates: {seen:#?}"))
            .expect("update channel closed");
        let stop = done(&update);
        seen.push(update);
        if stop {
            return seen;
        }
    }
}

/// Polls `cond` every 10ms until it holds, or panics after [`PATIENCE`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {PATIENCE:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The fixture certificate and key as a rustls server config.
pub fn tls_server_config(alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let cert = CertificateDer::from_pem_slice(include_bytes!("fixtures/server.crt")).unwrap();
    let key = PrivateKeyDer::from_pem_slice(include_bytes!("fixtures/server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}
