//! SuccessBeforePassing / FailuresBeforeWarning / FailuresBeforeCritical,
//! against a server whose every answer says which request it was.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use mesh_checks::{CheckDefinition, CheckKind, CheckStatus, CheckUpdate};

use crate::{fast, start, until};

/// Answers "hit N" with the status `pick(N)` gives (N counts from 1).
async fn counting_server(pick: fn(u64) -> u16) -> SocketAddr {
    let hits = Arc::new(AtomicU64::new(0));
    let app = Router::new().route(
        "/",
        get(move || {
            let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
            async move { (StatusCode::from_u16(pick(n)).unwrap(), format!("hit {n}")) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn check(addr: SocketAddr, initial: CheckStatus) -> CheckDefinition {
    let mut def = fast(
        "web",
        CheckKind::Http {
            url: format!("http://{addr}/"),
            method: "GET".into(),
            headers: BTreeMap::new(),
            body: String::new(),
            tls_skip_verify: false,
        },
    );
    def.status = initial;
    def
}

fn hit(update: &CheckUpdate) -> u64 {
    update
        .output
        .rsplit("hit ")
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn success_before_passing_waits_for_consecutive_successes() {
    let addr = counting_server(|_| 200).await;
    let mut def = check(addr, CheckStatus::Critical);
    def.success_before_passing = 3;
    let (_runner, mut rx) = start(def);
    let first = crate::next(&mut rx).await;
    assert_eq!(first.status, CheckStatus::Passing);
    assert_eq!(hit(&first), 3, "passing only on the third success");
}

#[tokio::test]
async fn failures_go_warning_then_critical() {
    let addr = counting_server(|_| 500).await;
    let mut def = check(addr, CheckStatus::Passing);
    def.failures_before_warning = 2;
    def.failures_before_critical = 4;
    let (_runner, mut rx) = start(def);
    let updates = until(&mut rx, |u| u.status == CheckStatus::Critical).await;
    assert_eq!(updates[0].status, CheckStatus::Warning);
    assert_eq!(hit(&updates[0]), 2, "warning on the second failure");
    // The third failure is a warning with new output; the fourth is critical.
    assert_eq!(updates.len(), 3, "{updates:#?}");
    assert_eq!(updates[1].status, CheckStatus::Warning);
    assert_eq!(hit(&updates[2]), 4, "critical on the fourth failure");
}

#[tokio::test]
async fn failures_before_warning_defaults_to_failures_before_critical() {
    let addr = counting_server(|_| 500).await;
    let mut def = check(addr, CheckStatus::Passing);
    def.failures_before_critical = 3;
    let (_runner, mut rx) = start(def);
    let first = crate::next(&mut rx).await;
    assert_eq!(
        first.status,
        CheckStatus::Critical,
        "no warning step: {first:?}"
    );
    assert_eq!(hit(&first), 3);
}

#[tokio::test]
async fn a_success_resets_the_failure_count() {
    // Failures on odd requests, successes on even: never two failures in a row.
    let addr = counting_server(|n| if n % 2 == 1 { 500 } else { 200 }).await;
    let mut def = check(addr, CheckStatus::Passing);
    def.failures_before_critical = 2;
    let (_runner, mut rx) = start(def);
    let updates = until(&mut rx, |u| hit(u) >= 8).await;
    assert!(
        updates.iter().all(|u| u.status == CheckStatus::Passing),
        "{updates:#?}"
    );
}

#[tokio::test]
async fn warning_counts_as_success_for_the_thresholds() {
    // 429 (warning) then 200s: with SuccessBeforePassing 2 the first report is the
    // second result, a success after a warning.
    let addr = counting_server(|n| if n == 1 { 429 } else { 200 }).await;
    let mut def = check(addr, CheckStatus::Critical);
    def.success_before_passing = 2;
    let (_runner, mut rx) = start(def);
    let first = crate::next(&mut rx).await;
    assert_eq!((first.status, hit(&first)), (CheckStatus::Passing, 2));
}
