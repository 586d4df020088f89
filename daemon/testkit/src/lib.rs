//! Test helpers: real `mesh agent` processes on port 0 with temp data dirs,
//! a `TestCluster` of them, and a bounded `eventually` for conditions.

#![forbid(unsafe_code)]

mod agent;
mod cluster;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

pub use agent::{AgentSpec, TestAgent};
pub use cluster::TestCluster;

/// The `mesh` binary under test: `$MESH_BIN`, else `target/<profile>/mesh`
/// next to the running test executable.
pub fn mesh_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MESH_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>/mesh
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("mesh"))
        .expect("test executable lives in target/<profile>/deps");
    assert!(
        bin.exists(),
        "{} not found: build it with `cargo test --workspace --no-run` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// The path of `tool` on `PATH`. A test that needs a tool fails, naming it
/// and how to get it, rather than passing without running.
pub fn require_tool(tool: &str, how: &str) -> PathBuf {
    find_tool(tool)
        .unwrap_or_else(|| panic!("{tool} is not on PATH, and this test needs it: {how}"))
}

/// The path of `tool` on `PATH`, if it is there.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// Runs the test `name` of the running test binary again, in a child
/// process under `CI=true` whose `PATH` is an empty directory, so no tool
/// the test needs can be found; returns whether it passed and what it
/// printed. For tests that prove a missing tool fails a test, naming it.
pub fn run_test_without_tools(name: &str) -> (bool, String) {
    let empty = tempfile::tempdir().expect("temp dir");
    let out = std::process::Command::new(std::env::current_exe().expect("current exe"))
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("PATH", empty.path())
        .env("CI", "true")
        .output()
        .expect("the test binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Retry `check` until it returns `Some`, at most `timeout`, polling every
/// 50 ms. Panics with `what` when time runs out.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_are_found_on_path() {
        assert!(find_tool("sh").is_some());
        assert!(find_tool("no-such-tool-mesh-needs").is_none());
    }

    #[test]
    #[should_panic(expected = "no-such-tool-mesh-needs is not on PATH, and this test needs it")]
    fn a_missing_tool_fails_the_test_naming_it() {
        require_tool("no-such-tool-mesh-needs", "install it");
    }
}
