//! One task per check: probe on an interval (or wait for TTL updates), apply
//! Consul's success/failure thresholds, and report only changes.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mesh_types::CheckStatus;
use rand::Rng;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::definition::{check_host_port, DEFAULT_SCRIPT_TIMEOUT, DEFAULT_TIMEOUT};
use crate::grpc::GrpcProbe;
use crate::http::HttpProbe;
use crate::output::{head, MAX_OUTPUT_BYTES};
use crate::{script, tcp, CheckDefinition, CheckError, CheckKind};

/// First runs are spread over at most this long (or the interval, if shorter),
/// so an agent starting with many checks does not probe them all at once.
const MAX_STAGGER: Duration = Duration::from_secs(5);

/// A change of a check's status or output, for the agent to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckUpdate {
    /// The check's ID.
    pub check_id: String,
    /// Its status now.
    pub status: CheckStatus,
    /// Its output now (at most about 4 KiB).
    pub output: String,
}

/// Agent-wide settings that decide which checks may run.
#[derive(Debug, Clone, Default)]
pub struct RunnerOptions {
    /// Allow script checks (`Args`); off by default, as in Consul.
    pub enable_script_checks: bool,
}

/// A running check. Dropping it (or calling [`CheckRunner::stop`]) stops the check.
#[derive(Debug)]
pub struct CheckRunner {
    check_id: String,
    type_name: &'static str,
    shared: Arc<Mutex<Reported>>,
    ttl: Option<mpsc::UnboundedSender<(CheckStatus, String)>>,
    task: JoinHandle<()>,
}

/// What was last reported, readable from the handle.
#[derive(Debug)]
struct Reported {
    status: CheckStatus,
    output: String,
    critical_since: Option<Instant>,
}

// === impl CheckRunner ===

impl CheckRunner {
    /// Starts the check's task on the current tokio runtime; updates go to `updates`.
    ///
    /// Fails for a script check when `opts.enable_script_checks` is off, and for
    /// a definition that cannot run (zero interval, bad URL or address).
    pub fn spawn(
        def: CheckDefinition,
        opts: &RunnerOptions,
        updates: mpsc::Sender<CheckUpdate>,
    ) -> Result<CheckRunner, CheckError> {
        let timeout = if def.timeout.is_zero() {
            match def.kind {
                CheckKind::Script { .. } => DEFAULT_SCRIPT_TIMEOUT,
                _ => DEFAULT_TIMEOUT,
            }
        } else {
            def.timeout
        };
        let probe = match &def.kind {
            CheckKind::Ttl { ttl } if ttl.is_zero() => {
                return Err(CheckError::field("TTL", "must be greater than zero"));
            }
            CheckKind::Ttl { .. } => None,
            _ if def.interval.is_zero() => {
                return Err(CheckError::field("Interval", "must be greater than zero"));
            }
            CheckKind::Http {
                url,
                method,
                headers,
                body,
                tls_skip_verify,
            } => Some(Probe::Http(HttpProbe::new(
                url,
                method,
                headers,
                body,
                *tls_skip_verify,
            )?)),
            CheckKind::Tcp { addr } => {
                check_host_port(addr).map_err(|m| CheckError::field("TCP", m))?;
                Some(Probe::Tcp(addr.clone()))
            }
            CheckKind::Script { .. } if !opts.enable_script_checks => {
                return Err(CheckError::ScriptChecksDisabled { check_id: def.id });
            }
            CheckKind::Script { args } if args.first().is_none_or(String::is_empty) => {
                return Err(CheckError::field("Args", "must name a program to run"));
            }
            CheckKind::Script { args } => Some(Probe::Script(args.clone())),
            CheckKind::Grpc {
                target,
                use_tls,
                tls_skip_verify,
            } => {
                let host_port = target.split_once('/').map_or(target.as_str(), |(hp, _)| hp);
                check_host_port(host_port).map_err(|m| CheckError::field("GRPC", m))?;
                Some(Probe::Grpc(GrpcProbe::new(
                    target,
                    *use_tls,
                    *tls_skip_verify,
                )))
            }
        };

        let shared = Arc::new(Mutex::new(Reported {
            status: def.status,
            output: String::new(),
            critical_since: (def.status == CheckStatus::Critical).then(Instant::now),
        }));
        let mut reporter = Reporter {
            check_id: def.id.clone(),
            updates,
            shared: shared.clone(),
            successes: 0,
            failures: 0,
            success_before_passing: def.success_before_passing,
            failures_before_critical: def.failures_before_critical,
            // Consul: unset means the same as FailuresBeforeCritical.
            failures_before_warning: match def.failures_before_warning {
                0 => def.failures_before_critical,
                n => n,
            },
        };

        let (ttl, task) = match (probe, &def.kind) {
            (Some(probe), _) => {
                let interval = def.interval;
                let task = tokio::spawn(async move {
                    run_interval(probe, interval, timeout, &mut reporter).await;
                });
                (None, task)
            }
            (None, CheckKind::Ttl { ttl }) => {
                let (tx, rx) = mpsc::unbounded_channel();
                let ttl = *ttl;
                let task = tokio::spawn(async move {
                    run_ttl(ttl, rx, &mut reporter).await;
                });
                (Some(tx), task)
            }
            (None, _) => unreachable!("every kind but TTL has a probe"),
        };
        tracing::debug!(check_id = %def.id, kind = def.type_name(), "check started");
        Ok(CheckRunner {
            check_id: def.id,
            type_name: def.kind.type_name(),
            shared,
            ttl,
            task,
        })
    }

    /// Sets a TTL check's status (the pass/warn/fail/update endpoints) and restarts its TTL.
    ///
    /// The change reaches the update channel like any other, if it is one.
    pub fn ttl_update(&self, status: CheckStatus, output: String) -> Result<(), CheckError> {
        let Some(tx) = &self.ttl else {
            return Err(CheckError::NotTtl {
                check_id: self.check_id.clone(),
                kind: self.type_name,
            });
        };
        tx.send((status, output)).map_err(|_| CheckError::Stopped {
            check_id: self.check_id.clone(),
        })
    }

    /// When the check last turned critical, if it is critical now (for `DeregisterCriticalServiceAfter`).
    pub fn critical_since(&self) -> Option<Instant> {
        self.reported().critical_since
    }

    /// The status and output last reported (the initial status until the first change).
    pub fn current(&self) -> (CheckStatus, String) {
        let r = self.reported();
        (r.status, r.output.clone())
    }

    /// The check's ID.
    pub fn check_id(&self) -> &str {
        &self.check_id
    }

    /// Stops the check; its task ends at its next await point and sends nothing more.
    pub fn stop(&self) {
        self.task.abort();
    }

    fn reported(&self) -> MutexGuard<'_, Reported> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for CheckRunner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// === the check tasks ===

enum Probe {
    Http(HttpProbe),
    Tcp(String),
    Script(Vec<String>),
    Grpc(GrpcProbe),
}

impl Probe {
    async fn run(&mut self, timeout: Duration) -> (CheckStatus, String) {
        match self {
            Probe::Http(p) => p.probe(timeout).await,
            Probe::Tcp(addr) => tcp::probe(addr, timeout).await,
            Probe::Script(args) => script::probe(args, timeout).await,
            Probe::Grpc(p) => p.probe(timeout).await,
        }
    }
}

async fn run_interval(
    mut probe: Probe,
    interval: Duration,
    timeout: Duration,
    reporter: &mut Reporter,
) {
    let spread = interval.min(MAX_STAGGER);
    let stagger = rand::rng().random_range(Duration::ZERO..=spread);
    let mut ticks = tokio::time::interval_at(Instant::now() + stagger, interval);
    // A probe that overran its interval is followed by a full interval, not a burst.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let (status, output) = probe.run(timeout).await;
        if !reporter.result(status, output).await {
            return;
        }
    }
}

async fn run_ttl(
    ttl: Duration,
    mut pushed: mpsc::UnboundedReceiver<(CheckStatus, String)>,
    reporter: &mut Reporter,
) {
    let mut deadline = Instant::now() + ttl;
    let mut expired = false;
    let mut last_output = String::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline), if !expired => {
                expired = true;
                let output = if last_output.is_empty() {
                    "TTL expired".to_string()
                } else {
                    format!("TTL expired (last output before timeout follows): {last_output}")
                };
                if !reporter.report(CheckStatus::Critical, output).await {
                    return;
                }
            }
            update = pushed.recv() => {
                let Some((status, output)) = update else { return };
                deadline = Instant::now() + ttl;
                expired = false;
                last_output = head(output.as_bytes(), MAX_OUTPUT_BYTES);
                // TTL checks report what the application says: no thresholds, as in Consul.
                if !reporter.report(status, last_output.clone()).await {
                    return;
                }
            }
        }
    }
}

// === impl Reporter ===

/// Consul's status handler: counts consecutive results and reports a status
/// once its threshold is met, and only when something changed.
struct Reporter {
    check_id: String,
    updates: mpsc::Sender<CheckUpdate>,
    shared: Arc<Mutex<Reported>>,
    successes: u32,
    failures: u32,
    success_before_passing: u32,
    failures_before_warning: u32,
    failures_before_critical: u32,
}

impl Reporter {
    /// Takes one probe result; false once nobody listens for updates.
    async fn result(&mut self, status: CheckStatus, output: String) -> bool {
        // Warning counts as a success, as in Consul (an HTTP 429 is "up, but busy").
        let to_report = if status != CheckStatus::Critical {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            (self.successes >= self.success_before_passing).then_some(status)
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.failures >= self.failures_before_critical {
                Some(CheckStatus::Critical)
            } else if self.failures >= self.failures_before_warning {
                Some(CheckStatus::Warning)
            } else {
                None
            }
        };
        match to_report {
            Some(status) => self.report(status, output).await,
            None => {
                tracing::debug!(
                    check_id = %self.check_id,
                    result = status.as_str(),
                    successes = self.successes,
                    failures = self.failures,
                    "check result below its threshold; status kept"
                );
                true
            }
        }
    }

    /// Publishes a status if it differs from the last one; false once nobody listens.
    async fn report(&mut self, status: CheckStatus, output: String) -> bool {
        {
            let mut r = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            if r.status == status && r.output == output {
                return true;
            }
            if r.status != status {
                tracing::debug!(check_id = %self.check_id, from = r.status.as_str(), to = status.as_str(), "check status changed");
            }
            r.critical_since = match status {
                CheckStatus::Critical => r.critical_since.or_else(|| Some(Instant::now())),
                _ => None,
            };
            r.status = status;
            r.output = output.clone();
        }
        let update = CheckUpdate {
            check_id: self.check_id.clone(),
            status,
            output,
        };
        self.updates.send(update).await.is_ok()
    }
}
