//! One task's life: wait for its sources, coalesce bursts in the buffer
//! period, and apply when (and only when) the rendered inputs changed;
//! retry failures with backoff; check for drift on an interval.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;

use crate::config::{Config, SourceSpec, Task, Trigger};
use crate::render::{root_module, Inputs, RootModule};
use crate::source::{SourceRx, Watchers};
use crate::store::{Event, EventError, Store};
use crate::terraform::{hex, Plan, Terraform};

/// First pause before retrying a failed run; it doubles up to the maximum.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
pub const MAX_RETRY: Duration = Duration::from_secs(300);
/// How long `-once`, `-inspect` and API inspections wait for the first read
/// of a task's sources.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// What every task shares.
pub struct Ctx {
    pub config: Config,
    pub watchers: Arc<Watchers>,
    pub store: Store,
    pub terraform: Terraform,
    /// Bounds terraform runs across tasks (`max_concurrent_runs`).
    pub runs: Semaphore,
}

/// A request to a running task.
pub enum Command {
    RunNow(oneshot::Sender<Result<Option<Event>, String>>),
    Inspect(oneshot::Sender<Result<Plan, String>>),
    SetEnabled(bool),
}

/// A task, its sources and its run state.
pub struct Runner {
    ctx: Arc<Ctx>,
    pub task: Task,
    enabled: Arc<AtomicBool>,
    trigger: Option<SourceRx>,
    sources: Vec<(SourceSpec, SourceRx)>,
    failures: u32,
    retry_at: Option<Instant>,
    drift_at: Option<Instant>,
}

/// Now, as RFC 3339 in UTC.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Runner {
    pub fn new(ctx: Arc<Ctx>, task: Task, enabled: Arc<AtomicBool>) -> Runner {
        let trigger = match &task.trigger {
            Trigger::Source(spec) => Some(ctx.watchers.subscribe(spec)),
            Trigger::Schedule(_) => None,
        };
        let sources = task
            .inputs
            .iter()
            .map(|spec| (spec.clone(), ctx.watchers.subscribe(spec)))
            .collect();
        let drift_at = task.drift_interval.map(|d| Instant::now() + d);
        Runner {
            ctx,
            task,
            enabled,
            trigger,
            sources,
            failures: 0,
            retry_at: None,
            drift_at,
        }
    }

    fn all_rx(&self) -> impl Iterator<Item = &SourceRx> {
        self.trigger
            .iter()
            .chain(self.sources.iter().map(|(_, rx)| rx))
    }

    fn ready(&self) -> bool {
        self.all_rx().all(|rx| rx.borrow().is_some())
    }

    /// Waits until every source has been read once (or `limit` passes).
    pub async fn wait_ready(&mut self, limit: Option<Duration>) -> bool {
        let deadline = limit.map(|l| Instant::now() + l);
        while !self.ready() {
            let mut waits: Vec<_> = self
                .trigger
                .iter_mut()
                .chain(self.sources.iter_mut().map(|(_, rx)| rx))
                .map(|rx| Box::pin(rx.changed()))
                .collect();
            tokio::select! {
                _ = futures::future::select_all(waits.iter_mut()) => {}
                _ = sleep_until_opt(deadline) => return false,
            }
        }
        true
    }

    /// The module inputs and the hash that decides whether to run: the
    /// hash covers the whole generated root module, the variable files and
    /// the trigger's data (which may not be an input).
    fn prepare(&self) -> Result<(RootModule, String), String> {
        let mut inputs = Inputs::new();
        let mut trigger_value = Value::Null;
        if let (Trigger::Source(spec), Some(rx)) = (&self.task.trigger, &self.trigger) {
            let v = rx
                .borrow()
                .clone()
                .ok_or("the task's condition has not been read yet")?;
            if self.task.trigger_is_input {
                inputs.insert(spec.variable(), v.clone());
            }
            trigger_value = v;
        }
        for (spec, rx) in &self.sources {
            let v = rx
                .borrow()
                .clone()
                .ok_or("a module input has not been read yet")?;
            inputs.insert(spec.variable(), v);
        }
        let module = root_module(&self.ctx.config, &self.task, &inputs)?;
        let mut h = Sha256::new();
        for (name, text) in &module.files {
            h.update(name.as_bytes());
            h.update([0]);
            h.update(text.as_bytes());
            h.update([0]);
        }
        for f in &self.task.variable_files {
            h.update(std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?);
            h.update([0]);
        }
        h.update(trigger_value.to_string().as_bytes());
        Ok((module, hex(&h.finalize())))
    }

    async fn write_and_init(&self, module: &RootModule) -> Result<(), String> {
        let dir = &self.task.working_dir;
        module
            .write(dir)
            .map_err(|e| format!("writing {}: {e}", dir.display()))?;
        self.ctx.terraform.init(dir, &self.task.name).await
    }

    /// Applies when the inputs differ from the last successful apply (or
    /// always, with `force`). `None` when nothing needed to run.
    pub async fn apply_if_changed(&mut self, trigger: &str, force: bool) -> Option<Event> {
        let (module, hash) = match self.prepare() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(task = %self.task.name, error = %e, "mesh sync: cannot render the task's inputs");
                return Some(self.failed_event(trigger, "", e));
            }
        };
        if !force
            && self
                .ctx
                .store
                .record(&self.task.name)
                .applied_hash
                .as_deref()
                == Some(&hash)
        {
            tracing::debug!(task = %self.task.name, "mesh sync: inputs unchanged; nothing to run");
            self.ctx.store.count_skip(&self.task.name);
            self.retry_at = None;
            return None;
        }
        let ctx = Arc::clone(&self.ctx);
        let _permit = ctx.runs.acquire().await.expect("semaphore never closes");
        let started = std::time::Instant::now();
        let mut event = Event {
            id: uuid::Uuid::new_v4().to_string(),
            task_name: self.task.name.clone(),
            kind: "apply".into(),
            trigger: trigger.into(),
            inputs_hash: hash.clone(),
            start_time: now_rfc3339(),
            end_time: None,
            duration_ms: None,
            success: false,
            error: None,
            plan_summary: None,
            drift: None,
        };
        // Recorded before terraform starts: a crash mid-run shows up as an
        // interrupted run after restart.
        self.ctx.store.put_event(event.clone());
        tracing::info!(task = %self.task.name, trigger, "mesh sync: running terraform apply");
        let result = match self.write_and_init(&module).await {
            Ok(()) => {
                self.ctx
                    .terraform
                    .apply(&self.task.working_dir, &self.task.variable_files)
                    .await
            }
            Err(e) => Err(e),
        };
        event.end_time = Some(now_rfc3339());
        event.duration_ms = Some(started.elapsed().as_millis() as u64);
        match result {
            Ok(summary) => {
                event.success = true;
                event.plan_summary = Some(summary);
                self.ctx.store.set_applied(&self.task.name, &hash);
                self.failures = 0;
                self.retry_at = None;
                tracing::info!(task = %self.task.name, "mesh sync: apply succeeded");
            }
            Err(e) => {
                tracing::warn!(task = %self.task.name, error = %e, "mesh sync: apply failed; will retry");
                event.error = Some(EventError { message: e });
                self.schedule_retry();
            }
        }
        self.ctx.store.put_event(event.clone());
        Some(event)
    }

    fn schedule_retry(&mut self) {
        self.failures += 1;
        let delay = FIRST_RETRY
            .saturating_mul(1 << (self.failures - 1).min(16))
            .min(MAX_RETRY);
        self.retry_at = Some(Instant::now() + delay);
    }

    fn failed_event(&mut self, trigger: &str, hash: &str, message: String) -> Event {
        let now = now_rfc3339();
        let event = Event {
            id: uuid::Uuid::new_v4().to_string(),
            task_name: self.task.name.clone(),
            kind: "apply".into(),
            trigger: trigger.into(),
            inputs_hash: hash.into(),
            start_time: now.clone(),
            end_time: Some(now),
            duration_ms: Some(0),
            success: false,
            error: Some(EventError { message }),
            plan_summary: None,
            drift: None,
        };
        self.ctx.store.put_event(event.clone());
        self.schedule_retry();
        event
    }

    /// `terraform plan` with the current inputs, changing nothing.
    pub async fn inspect(&self) -> Result<Plan, String> {
        let (module, _) = self.prepare()?;
        let _permit = self
            .ctx
            .runs
            .acquire()
            .await
            .expect("semaphore never closes");
        self.write_and_init(&module).await?;
        self.ctx
            .terraform
            .plan(&self.task.working_dir, &self.task.variable_files)
            .await
    }

    /// A plan with the inputs last applied: any change is drift.
    async fn drift_check(&mut self) {
        let Ok((module, hash)) = self.prepare() else {
            return;
        };
        if self
            .ctx
            .store
            .record(&self.task.name)
            .applied_hash
            .as_deref()
            != Some(&hash)
        {
            // A run is due anyway; a plan now would show inputs, not drift.
            return;
        }
        let ctx = Arc::clone(&self.ctx);
        let _permit = ctx.runs.acquire().await.expect("semaphore never closes");
        let started = std::time::Instant::now();
        let start_time = now_rfc3339();
        let result = match self.write_and_init(&module).await {
            Ok(()) => {
                self.ctx
                    .terraform
                    .plan(&self.task.working_dir, &self.task.variable_files)
                    .await
            }
            Err(e) => Err(e),
        };
        let mut event = Event {
            id: uuid::Uuid::new_v4().to_string(),
            task_name: self.task.name.clone(),
            kind: "drift-check".into(),
            trigger: "drift_check".into(),
            inputs_hash: hash,
            start_time,
            end_time: Some(now_rfc3339()),
            duration_ms: Some(started.elapsed().as_millis() as u64),
            success: false,
            error: None,
            plan_summary: None,
            drift: None,
        };
        match result {
            Ok(plan) => {
                event.success = true;
                event.drift = Some(plan.changes_present);
                event.plan_summary = Some(plan.summary);
                if plan.changes_present {
                    tracing::warn!(task = %self.task.name, "mesh sync: drift detected (not applied)");
                }
            }
            Err(e) => event.error = Some(EventError { message: e }),
        }
        self.ctx.store.put_event(event);
    }

    fn next_cron(&self) -> Option<Instant> {
        let Trigger::Schedule(cron) = &self.task.trigger else {
            return None;
        };
        let now = chrono::Utc::now();
        let next = cron.find_next_occurrence(&now, false).ok()?;
        let wait = (next - now).to_std().unwrap_or_default();
        Some(Instant::now() + wait)
    }

    fn enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    /// Waits out the buffer period after a change: `min` after the last
    /// change, never more than `max` after the first. Commands that arrive
    /// meanwhile are kept for later.
    async fn buffer(&mut self, cmds: &mut mpsc::Receiver<Command>, pending: &mut Vec<Command>) {
        let (Some(b), Some(rx)) = (self.task.buffer, self.trigger.as_mut()) else {
            return;
        };
        let deadline = Instant::now() + b.max;
        let mut quiet = Instant::now() + b.min;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(quiet.min(deadline)) => return,
                r = rx.changed() => {
                    if r.is_err() {
                        return;
                    }
                    quiet = Instant::now() + b.min;
                }
                Some(c) = cmds.recv() => pending.push(c),
            }
        }
    }

    async fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::RunNow(reply) => {
                let out = self.apply_if_changed("api", true).await;
                let _ = reply.send(match out {
                    Some(ev) if !ev.success => Err(ev
                        .error
                        .map(|e| e.message)
                        .unwrap_or_else(|| "the run failed".into())),
                    other => Ok(other),
                });
            }
            Command::Inspect(reply) => {
                let _ = reply.send(self.inspect().await);
            }
            Command::SetEnabled(on) => {
                let was = self.enabled.swap(on, Ordering::SeqCst);
                if on && !was {
                    self.apply_if_changed("enable", false).await;
                }
            }
        }
    }

    /// The daemon loop; ends when the command channel closes (task deleted).
    pub async fn run(mut self, mut cmds: mpsc::Receiver<Command>) {
        let mut pending: Vec<Command> = Vec::new();
        // Commands wait while the sources are first read.
        loop {
            tokio::select! {
                _ = self.wait_ready(None) => break,
                c = cmds.recv() => match c {
                    Some(c) => pending.push(c),
                    None => return,
                },
            }
        }
        if let Some(rx) = self.trigger.as_mut() {
            rx.borrow_and_update();
        }
        if self.enabled() {
            // A change made while mesh sync was down is applied now.
            self.apply_if_changed("start", false).await;
        }
        loop {
            for c in std::mem::take(&mut pending) {
                self.handle(c).await;
            }
            let cron_at = self.next_cron();
            let retry_at = self.retry_at;
            let drift_at = self.drift_at;
            let trigger_changed = async {
                match self.trigger.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ok = trigger_changed => {
                    if !ok {
                        return;
                    }
                    if self.enabled() {
                        self.buffer(&mut cmds, &mut pending).await;
                        self.apply_if_changed("change", false).await;
                    }
                }
                _ = sleep_until_opt(cron_at) => {
                    if self.enabled() {
                        self.apply_if_changed("schedule", false).await;
                    }
                }
                _ = sleep_until_opt(retry_at) => {
                    self.retry_at = None;
                    if self.enabled() {
                        self.apply_if_changed("retry", true).await;
                    }
                }
                _ = sleep_until_opt(drift_at) => {
                    self.drift_at = self.task.drift_interval.map(|d| Instant::now() + d);
                    if self.enabled() {
                        self.drift_check().await;
                    }
                }
                c = cmds.recv() => match c {
                    Some(c) => pending.push(c),
                    None => return,
                },
            }
        }
    }
}

/// A summary for logs and the API of what a run did.
pub fn event_json(ev: &Event, task: &Task) -> Value {
    json!({
        "id": ev.id,
        "task_name": ev.task_name,
        "kind": ev.kind,
        "trigger": ev.trigger,
        "inputs_hash": ev.inputs_hash,
        "start_time": ev.start_time,
        "end_time": ev.end_time,
        "duration_ms": ev.duration_ms,
        "success": ev.success,
        "error": ev.error,
        "plan_summary": ev.plan_summary,
        "drift": ev.drift,
        "config": {
            "providers": task.def.providers,
            "services": condition_services(task),
            "source": task.module,
        },
    })
}

/// The service names a task's condition names (CTS shows them in status).
pub fn condition_services(task: &Task) -> Vec<String> {
    match &task.trigger {
        Trigger::Source(SourceSpec::Services { names, .. }) => names.clone(),
        _ => Vec::new(),
    }
}
