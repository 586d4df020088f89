use std::time::Duration;

use mesh_checks::{
    CheckDefinition, CheckError, CheckKind, CheckRunner, CheckStatus, RunnerOptions,
};
use tokio::sync::mpsc;

use crate::{eventually, fast, next, start};

fn sh(id: &str, script: &str) -> CheckDefinition {
    fast(
        id,
        CheckKind::Script {
            args: vec!["/bin/sh".into(), "-c".into(), script.into()],
        },
    )
}

#[tokio::test]
async fn exit_codes_map_to_passing_warning_critical() {
    let (_ok, mut ok) = start(sh("ok", "echo fine"));
    let update = next(&mut ok).await;
    assert_eq!(
        (update.status, update.output.as_str()),
        (CheckStatus::Passing, "fine\n")
    );

    let (_warn, mut warn) = start(sh("warn", "echo disk 85% >&2; exit 1"));
    let update = next(&mut warn).await;
    assert_eq!(
        (update.status, update.output.as_str()),
        (CheckStatus::Warning, "disk 85%\n")
    );

    let (_crit, mut crit) = start(sh("crit", "echo out; echo err >&2; exit 2"));
    let update = next(&mut crit).await;
    assert_eq!(update.status, CheckStatus::Critical);
    // Both streams are captured.
    assert!(
        update.output.contains("out\n") && update.output.contains("err\n"),
        "{:?}",
        update.output
    );
}

#[tokio::test]
async fn args_run_without_a_shell() {
    let def = fast(
        "echo",
        CheckKind::Script {
            args: vec!["echo".into(), "$HOME".into(), "a b".into()],
        },
    );
    let (_runner, mut rx) = start(def);
    assert_eq!(next(&mut rx).await.output, "$HOME a b\n");
}

#[tokio::test]
async fn missing_program_is_critical() {
    let def = fast(
        "missing",
        CheckKind::Script {
            args: vec!["/nonexistent/check-disk".into()],
        },
    );
    let (_runner, mut rx) = start(def);
    let update = next(&mut rx).await;
    assert_eq!(update.status, CheckStatus::Critical);
    assert!(
        update.output.contains("/nonexistent/check-disk"),
        "{}",
        update.output
    );
}

#[tokio::test]
async fn output_is_truncated_to_its_last_4k() {
    let (_runner, mut rx) = start(sh(
        "chatty",
        "head -c 10000 /dev/zero | tr '\\0' a; echo; echo THE END",
    ));
    let update = next(&mut rx).await;
    assert_eq!(update.status, CheckStatus::Passing);
    assert!(
        update
            .output
            .starts_with("Captured 4096 of 10009 bytes\n...\n"),
        "{}",
        &update.output[..60]
    );
    assert!(update.output.ends_with("aaaa\nTHE END\n"));
}

#[tokio::test]
async fn timeout_kills_the_script_and_its_children() {
    let dir = std::env::temp_dir().join(format!("mesh-checks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pidfile = dir.join("child.pid");
    let _ = std::fs::remove_file(&pidfile);
    let script = format!(
        "sleep 300 & echo $! > {}; echo started; wait",
        pidfile.display()
    );
    let mut def = sh("hang", &script);
    def.timeout = Duration::from_secs(1);
    def.interval = Duration::from_secs(3600);
    let (_runner, mut rx) = start(def);
    let update = next(&mut rx).await;
    assert_eq!(update.status, CheckStatus::Critical);
    assert!(
        update.output.starts_with("Timed out (1s) running check"),
        "{}",
        update.output
    );
    assert!(update.output.contains("started"), "{}", update.output);

    // The background `sleep` was in the script's process group: it is gone too.
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    eventually("the script's child is killed", || !is_alive(&proc_dir)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Alive and not a zombie waiting to be reaped by init.
fn is_alive(proc_dir: &std::path::Path) -> bool {
    match std::fs::read_to_string(proc_dir.join("stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

#[tokio::test]
async fn script_checks_are_refused_unless_enabled() {
    let (tx, _rx) = mpsc::channel(1);
    let err = CheckRunner::spawn(sh("disk", "true"), &RunnerOptions::default(), tx).unwrap_err();
    assert_eq!(
        err,
        CheckError::ScriptChecksDisabled {
            check_id: "disk".into()
        }
    );
    assert!(err.to_string().contains("enable_script_checks"), "{err}");
}
