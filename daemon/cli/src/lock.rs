//! `mesh lock [-n N] PREFIX CMD`, like `consul lock`: run CMD while holding
//! a lock (or one of N semaphore slots) under PREFIX, on a session kept
//! alive by renewals. If the lock is lost the command is killed; when it
//! exits the lock is released and its exit code is ours.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use mesh_client::{Client, QueryOptions};
use serde_json::{json, Value};

use crate::output::HttpArgs;

/// Consul's session TTL for locks; renewed every third of it.
const SESSION_TTL: Duration = Duration::from_secs(15);
/// The longest one wait for the holder to change blocks.
const WAIT_STEP: Duration = Duration::from_secs(5);
/// The most slots a semaphore may have.
const MAX_SLOTS: u32 = 1024;

/// Flags of `mesh lock` (Consul's names).
#[derive(Debug, Clone, Args)]
pub struct LockArgs {
    /// Slots: 1 is a lock, more a semaphore shared by up to N holders
    #[arg(short = 'n', long = "n", default_value_t = 1, value_name = "N")]
    pub limit: u32,
    /// The session's name
    #[arg(long, default_value = "mesh lock")]
    pub name: String,
    /// Give up if the lock is not held after this long (0: wait forever)
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print what the lock does
    #[arg(long)]
    pub verbose: bool,
    #[command(flatten)]
    pub http: HttpArgs,
    /// The KV prefix the lock lives under
    pub prefix: String,
    /// The command to run, by `sh -c`
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    mesh_types::parse_go_duration(text)
}

/// What the lock is: the one key of a lock, or a semaphore's.
struct Lock {
    client: Client,
    session: String,
    prefix: String,
    limit: u32,
}

impl Lock {
    fn lock_key(&self) -> String {
        format!("{}/.lock", self.prefix)
    }

    fn contender_key(&self) -> String {
        format!("{}/{}", self.prefix, self.session)
    }

    /// One try at the lock: `Ok(true)` once held; else the index to wait on.
    async fn try_take(&self) -> anyhow::Result<Result<(), u64>> {
        if self.limit == 1 {
            if self
                .client
                .kv_lock(&self.lock_key(), "", &self.session, false)
                .await?
            {
                return Ok(Ok(()));
            }
            let (pair, meta) = self
                .client
                .kv_get(&self.lock_key(), &QueryOptions::default())
                .await?;
            // Free but refused: a lost holder's lock delay. Poll, not block.
            let free = pair.is_none_or(|p| p.session.is_none());
            return Ok(Err(if free { 0 } else { meta.index }));
        }
        let (pairs, meta) = self
            .client
            .kv_list(&format!("{}/", self.prefix), &QueryOptions::default())
            .await?;
        let live: BTreeSet<String> = pairs.iter().filter_map(|p| p.session.clone()).collect();
        let lock = pairs.iter().find(|p| p.key == self.lock_key());
        let mut holders: BTreeSet<String> = match lock.and_then(|p| p.value.as_deref()) {
            Some(bytes) if !bytes.is_empty() => {
                let v: Value = serde_json::from_slice(bytes)
                    .with_context(|| format!("{} is not a semaphore", self.lock_key()))?;
                if v["Limit"].as_u64() != Some(u64::from(self.limit)) {
                    bail!(
                        "the semaphore under {} has limit {}, not {}",
                        self.prefix,
                        v["Limit"],
                        self.limit
                    );
                }
                v["Holders"]
                    .as_object()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default()
            }
            _ => BTreeSet::new(),
        };
        // Holders whose session ended left no live contender key: drop them.
        holders.retain(|h| live.contains(h));
        if holders.len() as u32 >= self.limit {
            return Ok(Err(meta.index));
        }
        holders.insert(self.session.clone());
        let body = json!({
            "Limit": self.limit,
            "Holders": holders.iter().map(|h| (h.clone(), json!(true))).collect::<serde_json::Map<_, _>>(),
        });
        let cas = lock.map_or(0, |p| p.modify_index);
        let taken = self
            .client
            .kv_put(&self.lock_key(), body.to_string(), None, Some(cas))
            .await?;
        Ok(if taken { Ok(()) } else { Err(0) })
    }

    /// Waits until the lock is held, or `deadline` passes.
    async fn take(&self, deadline: Option<Instant>) -> anyhow::Result<()> {
        if self.limit > 1
            && !self
                .client
                .kv_lock(&self.contender_key(), "", &self.session, false)
                .await?
        {
            bail!("cannot register as a contender at {}", self.contender_key());
        }
        loop {
            let index = match self.try_take().await? {
                Ok(()) => return Ok(()),
                Err(index) => index,
            };
            if deadline.is_some_and(|d| Instant::now() >= d) {
                bail!("timed out waiting for the lock on {}", self.prefix);
            }
            let wait = QueryOptions {
                index: Some(index),
                wait: Some(if index == 0 {
                    Duration::from_millis(500)
                } else {
                    WAIT_STEP
                }),
                ..Default::default()
            };
            if index == 0 {
                tokio::time::sleep(Duration::from_millis(250)).await;
            } else if self.limit == 1 {
                self.client.kv_get(&self.lock_key(), &wait).await?;
            } else {
                self.client
                    .kv_list(&format!("{}/", self.prefix), &wait)
                    .await?;
            }
        }
    }

    /// Whether this session still holds the lock (or its slot).
    async fn held(&self) -> anyhow::Result<bool> {
        if self.limit == 1 {
            let (pair, _) = self
                .client
                .kv_get(&self.lock_key(), &QueryOptions::default())
                .await?;
            return Ok(pair.and_then(|p| p.session).as_deref() == Some(&self.session));
        }
        let (pair, _) = self
            .client
            .kv_get(&self.contender_key(), &QueryOptions::default())
            .await?;
        Ok(pair.and_then(|p| p.session).as_deref() == Some(&self.session))
    }

    /// Gives the lock (or slot) back, then ends the session.
    async fn release(&self) {
        if self.limit == 1 {
            let _ = self
                .client
                .kv_lock(&self.lock_key(), "", &self.session, true)
                .await;
        } else {
            for _ in 0..10 {
                let Ok((Some(lock), _)) = self
                    .client
                    .kv_get(&self.lock_key(), &QueryOptions::default())
                    .await
                else {
                    break;
                };
                let mut v: Value = lock
                    .value
                    .as_deref()
                    .and_then(|b| serde_json::from_slice(b).ok())
                    .unwrap_or_default();
                if let Some(h) = v["Holders"].as_object_mut() {
                    h.remove(&self.session);
                }
                let put = self
                    .client
                    .kv_put(
                        &self.lock_key(),
                        v.to_string(),
                        None,
                        Some(lock.modify_index),
                    )
                    .await;
                if !matches!(put, Ok(false)) {
                    break;
                }
            }
            let _ = self
                .client
                .kv_delete(&self.contender_key(), false, None)
                .await;
        }
        let _ = self.client.session_destroy(&self.session).await;
    }
}

/// Runs `mesh lock`.
pub async fn run(args: &LockArgs) -> anyhow::Result<ExitCode> {
    if args.limit == 0 || args.limit > MAX_SLOTS {
        bail!("-n must be 1 to {MAX_SLOTS}");
    }
    let prefix = args.prefix.trim_matches('/').to_string();
    if prefix.is_empty() {
        bail!("give the KV prefix the lock lives under");
    }
    let client = args.http.client()?;
    let behavior = if args.limit == 1 { "release" } else { "delete" };
    let session = client
        .session_create(&json!({
            "Name": args.name,
            "TTL": mesh_types::format_go_duration(SESSION_TTL),
            "Behavior": behavior,
        }))
        .await
        .context("creating the lock's session")?;
    let lock = Lock {
        client,
        session,
        prefix,
        limit: args.limit,
    };
    let renewer = {
        let client = lock.client.clone();
        let session = lock.session.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SESSION_TTL / 3).await;
                match client.session_renew(&session).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => eprintln!("renewing the lock's session: {e}"),
                }
            }
        })
    };
    let deadline = (!args.timeout.is_zero()).then(|| Instant::now() + args.timeout);
    if let Err(e) = lock.take(deadline).await {
        renewer.abort();
        lock.release().await;
        return Err(e);
    }
    if args.verbose {
        eprintln!(
            "Lock acquired on {} (session {})",
            lock.prefix, lock.session
        );
    }
    let code = run_holding(&lock, &args.command.join(" "), args.verbose).await;
    renewer.abort();
    lock.release().await;
    if args.verbose {
        eprintln!("Lock released");
    }
    code
}

/// Runs the command while the lock is held; kills it if the lock is lost.
async fn run_holding(lock: &Lock, command: &str, verbose: bool) -> anyhow::Result<ExitCode> {
    // A group of its own, so whatever it starts is stopped with it.
    let mut child = tokio::process::Command::new("sh")
        .args(["-c", command])
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            status = child.wait() => {
                let code = status?.code().unwrap_or(1);
                return Ok(ExitCode::from(code.clamp(0, 255) as u8));
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                if !lock.held().await.unwrap_or(true) {
                    eprintln!("Lock lost, killing child");
                    stop(&mut child).await;
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    }
    if verbose {
        eprintln!("Interrupted, killing child");
    }
    stop(&mut child).await;
    Ok(ExitCode::FAILURE)
}

/// How long the command's group has to end after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// SIGTERM to the command's process group, then SIGKILL if it lingers.
async fn stop(child: &mut tokio::process::Child) {
    use rustix::process::{kill_process_group, Pid, Signal};
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(Pid::from_raw);
    if let Some(group) = group {
        // ESRCH (already gone) is fine.
        let _ = kill_process_group(group, Signal::TERM);
        if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok() {
            let _ = kill_process_group(group, Signal::KILL);
            return;
        }
        let _ = kill_process_group(group, Signal::KILL);
    }
    let _ = child.kill().await;
}
