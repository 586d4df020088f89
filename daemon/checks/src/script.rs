//! Script checks: run `Args` without a shell; exit 0 passing, 1 warning,
//! anything else critical. A run past its timeout is killed with its whole
//! process group, so a `sh -c` wrapper cannot leave its children behind.

use std::process::Stdio;
use std::time::Duration;

use mesh_types::CheckStatus;
use rustix::process::{kill_process_group, Pid, Signal};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::output::{Tail, MAX_OUTPUT_BYTES};

/// Runs the script once.
pub(crate) async fn probe(args: &[String], timeout: Duration) -> (CheckStatus, String) {
    let Some((program, rest)) = args.split_first() else {
        return (
            CheckStatus::Critical,
            "script check has no Args".to_string(),
        );
    };
    let mut child = match Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            return (
                CheckStatus::Critical,
                format!("Failed to start check {program:?}: {e}"),
            )
        }
    };
    // Declared after `child` so it drops first: the group is killed while the
    // leader is still unreaped, so its ID cannot have been reused.
    let mut group = GroupKill(child.id().and_then(|id| Pid::from_raw(id as i32)));

    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let mut output = Tail::new(MAX_OUTPUT_BYTES);
    let run = async {
        collect(stdout, stderr, &mut output).await;
        child.wait().await
    };
    let result = tokio::time::timeout(timeout, run).await;
    match result {
        Ok(Ok(exit)) => {
            group.disarm();
            let status = match exit.code() {
                Some(0) => CheckStatus::Passing,
                Some(1) => CheckStatus::Warning,
                _ => CheckStatus::Critical,
            };
            (status, output.render())
        }
        Ok(Err(e)) => (
            CheckStatus::Critical,
            format!("Failed to wait for check: {e}"),
        ),
        Err(_) => {
            group.kill();
            let captured = output.render();
            let mut msg = format!("Timed out ({timeout:?}) running check");
            if !captured.is_empty() {
                msg.push_str("; output before the timeout:\n");
                msg.push_str(&captured);
            }
            (CheckStatus::Critical, msg)
        }
    }
}

/// Reads stdout and stderr together until both close, in arrival order.
async fn collect(
    mut stdout: Option<impl AsyncRead + Unpin>,
    mut stderr: Option<impl AsyncRead + Unpin>,
    into: &mut Tail,
) {
    let mut a = [0u8; 4096];
    let mut b = [0u8; 4096];
    while stdout.is_some() || stderr.is_some() {
        tokio::select! {
            n = read_some(&mut stdout, &mut a), if stdout.is_some() => match n {
                Some(n) => into.push(&a[..n]),
                None => stdout = None,
            },
            n = read_some(&mut stderr, &mut b), if stderr.is_some() => match n {
                Some(n) => into.push(&b[..n]),
                None => stderr = None,
            },
        }
    }
}

/// One read; `None` at end of stream or on error.
async fn read_some(pipe: &mut Option<impl AsyncRead + Unpin>, buf: &mut [u8]) -> Option<usize> {
    let pipe = pipe.as_mut()?;
    match pipe.read(buf).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

/// Kills the script's process group when dropped, unless the script exited.
struct GroupKill(Option<Pid>);

impl GroupKill {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // ESRCH (all gone already) is fine.
            let _ = kill_process_group(pgid, Signal::KILL);
        }
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}
