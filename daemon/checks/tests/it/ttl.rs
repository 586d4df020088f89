use std::time::Duration;

use mesh_checks::{CheckDefinition, CheckError, CheckKind, CheckStatus};

use crate::{fast, next, start};

fn ttl_check(id: &str, ttl: Duration) -> CheckDefinition {
    CheckDefinition::new(id, CheckKind::Ttl { ttl })
}

#[tokio::test]
async fn ttl_expires_to_critical() {
    let mut def = ttl_check("app", Duration::from_millis(100));
    def.status = CheckStatus::Passing;
    let (runner, mut rx) = start(def);
    assert_eq!(runner.critical_since(), None);
    let update = next(&mut rx).await;
    assert_eq!(update.status, CheckStatus::Critical);
    assert_eq!(update.output, "TTL expired");
    assert!(runner.critical_since().is_some());
}

#[tokio::test]
async fn ttl_update_sets_status_and_restarts_the_timer() {
    let (runner, mut rx) = start(ttl_check("app", Duration::from_millis(300)));
    runner
        .ttl_update(CheckStatus::Passing, "ready".into())
        .unwrap();
    let update = next(&mut rx).await;
    assert_eq!(
        (update.status, update.output.as_str()),
        (CheckStatus::Passing, "ready")
    );
    assert_eq!(runner.critical_since(), None);
    assert_eq!(
        runner.current(),
        (CheckStatus::Passing, "ready".to_string())
    );

    runner
        .ttl_update(CheckStatus::Warning, "degraded".into())
        .unwrap();
    let update = next(&mut rx).await;
    assert_eq!(
        (update.status, update.output.as_str()),
        (CheckStatus::Warning, "degraded")
    );

    // Not refreshed: it expires, quoting the last output.
    let update = next(&mut rx).await;
    assert_eq!(update.status, CheckStatus::Critical);
    assert_eq!(
        update.output,
        "TTL expired (last output before timeout follows): degraded"
    );

    // And recovers on the next push.
    runner
        .ttl_update(CheckStatus::Passing, "back".into())
        .unwrap();
    let update = next(&mut rx).await;
    assert_eq!(
        (update.status, update.output.as_str()),
        (CheckStatus::Passing, "back")
    );
}

#[tokio::test]
async fn ttl_refreshes_keep_the_check_passing() {
    let ttl = Duration::from_secs(1);
    let (runner, mut rx) = start(ttl_check("app", ttl));
    runner
        .ttl_update(CheckStatus::Passing, "ok".into())
        .unwrap();
    assert_eq!(next(&mut rx).await.status, CheckStatus::Passing);
    // Refresh every tenth of the TTL for two TTLs: no expiry in between, even
    // if this busy machine is late on some refreshes.
    let start = tokio::time::Instant::now();
    while start.elapsed() < ttl * 2 {
        tokio::time::sleep(ttl / 10).await;
        runner
            .ttl_update(CheckStatus::Passing, "ok".into())
            .unwrap();
    }
    runner
        .ttl_update(CheckStatus::Warning, "marker".into())
        .unwrap();
    // Unchanged refreshes send nothing, and nothing expired: the marker comes next.
    let update = next(&mut rx).await;
    assert_eq!(
        (update.status, update.output.as_str()),
        (CheckStatus::Warning, "marker")
    );
}

#[tokio::test]
async fn repeated_identical_updates_are_sent_once() {
    let (runner, mut rx) = start(ttl_check("app", Duration::from_secs(60)));
    for _ in 0..5 {
        runner
            .ttl_update(CheckStatus::Passing, "same".into())
            .unwrap();
    }
    runner
        .ttl_update(CheckStatus::Passing, "different".into())
        .unwrap();
    assert_eq!(next(&mut rx).await.output, "same");
    assert_eq!(next(&mut rx).await.output, "different");
}

#[tokio::test]
async fn ttl_update_on_other_checks_is_refused() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (runner, _rx) = start(fast("db", CheckKind::Tcp { addr }));
    let err = runner
        .ttl_update(CheckStatus::Passing, String::new())
        .unwrap_err();
    assert!(
        matches!(err, CheckError::NotTtl { kind: "tcp", .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("not a TTL check"), "{err}");
}

#[tokio::test]
async fn a_stopped_runner_sends_nothing_more() {
    let (runner, mut rx) = start(ttl_check("app", Duration::from_millis(50)));
    runner.stop();
    let err = {
        // The task is aborted; once it is gone the channel closes and updates are refused.
        crate::eventually("runner task ends", || {
            runner
                .ttl_update(CheckStatus::Passing, String::new())
                .is_err()
        })
        .await;
        runner
            .ttl_update(CheckStatus::Passing, String::new())
            .unwrap_err()
    };
    assert!(matches!(err, CheckError::Stopped { .. }), "{err:?}");
    drop(runner);
    assert!(rx.recv().await.is_none(), "no update after stop");
}
