//! `mesh sync`: consul-terraform-sync's job for mesh. It watches the catalog
//! and KV with blocking queries and runs Terraform modules when what a task
//! reads changes; CTS's config language, module contract and API, plus what
//! CTS users ask for: no run when inputs are unchanged, runs remembered
//! across restarts, drift checks, retries, bounded concurrency.

pub mod api;
pub mod config;
pub mod render;
pub mod runner;
pub mod source;
pub mod store;
pub mod terraform;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex, Semaphore};

pub use config::{Config, LoadError, TaskConfig};
use runner::{Command, Ctx, Runner};
use store::{Event, Store};
use terraform::{Plan, Terraform};

/// How `mesh sync` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Watch and run until stopped, serving the API.
    Daemon,
    /// Run every enabled task once (when its inputs changed), then exit.
    Once,
    /// Print each task's plan; change nothing.
    Inspect,
}

/// A running task as the daemon holds it.
struct Handle {
    task: config::Task,
    enabled: Arc<AtomicBool>,
    /// Created through the API (kept in the state file).
    from_api: bool,
    tx: mpsc::Sender<Command>,
}

/// Why an API call failed: a status and a message.
#[derive(Debug)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

impl Refusal {
    fn new(status: u16, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
        }
    }
}

/// The mesh sync daemon: its tasks and what they share.
pub struct Daemon {
    ctx: Arc<Ctx>,
    tasks: Mutex<BTreeMap<String, Handle>>,
}

fn mesh_client(conn: &config::MeshConn) -> Result<mesh_client::Client, String> {
    let mut client = mesh_client::Client::new(&conn.url()).map_err(|e| e.to_string())?;
    let cert = match (&conn.cert_file, &conn.key_file) {
        (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
        _ => None,
    };
    if conn.ca_file.is_some() || cert.is_some() {
        client = client
            .with_tls_files(conn.ca_file.as_deref(), cert)
            .map_err(|e| e.to_string())?;
    }
    Ok(client.with_token(conn.token.clone()))
}

impl Daemon {
    /// Opens the state, checks terraform and starts every task.
    pub async fn start(config: Config, spawn_runners: bool) -> Result<Arc<Daemon>, String> {
        let store = Store::open(&config.working_dir)?;
        let terraform = Terraform::new(&config.terraform, &config.mesh);
        let version = terraform.check().await?;
        tracing::info!(%version, "mesh sync: using terraform");
        let client = mesh_client(&config.mesh)?;
        let ctx = Arc::new(Ctx {
            watchers: source::Watchers::new(client),
            store,
            terraform,
            runs: Semaphore::new(config.max_concurrent_runs),
            config,
        });
        let daemon = Arc::new(Daemon {
            ctx: Arc::clone(&ctx),
            tasks: Mutex::new(BTreeMap::new()),
        });
        if spawn_runners {
            let mut tasks = daemon.tasks.lock().await;
            for task in ctx.config.tasks.clone() {
                daemon.spawn(&mut tasks, task, false);
            }
            for def in ctx.store.api_tasks() {
                if tasks.contains_key(&def.name) {
                    tracing::warn!(task = %def.name, "mesh sync: a config file now defines this API-created task; the file wins");
                    continue;
                }
                match daemon.check(&def) {
                    Ok(task) => daemon.spawn(&mut tasks, task, true),
                    Err(e) => {
                        tracing::error!(task = %def.name, error = %e.message, "mesh sync: a saved API task no longer checks; skipped")
                    }
                }
            }
        }
        Ok(daemon)
    }

    fn spawn(&self, tasks: &mut BTreeMap<String, Handle>, task: config::Task, from_api: bool) {
        let saved = self.ctx.store.record(&task.name).enabled;
        let enabled = Arc::new(AtomicBool::new(saved.unwrap_or(task.enabled)));
        let (tx, rx) = mpsc::channel(16);
        let runner = Runner::new(Arc::clone(&self.ctx), task.clone(), Arc::clone(&enabled));
        tokio::spawn(runner.run(rx));
        tasks.insert(
            task.name.clone(),
            Handle {
                task,
                enabled,
                from_api,
                tx,
            },
        );
    }

    fn check(&self, def: &TaskConfig) -> Result<config::Task, Refusal> {
        let cfg = &self.ctx.config;
        let providers: BTreeSet<String> = cfg.providers.keys().cloned().collect();
        config::check_task(
            def,
            &providers,
            cfg.buffer,
            cfg.drift_check.as_ref(),
            &cfg.working_dir,
        )
        .map_err(|(key, msg)| Refusal::new(400, format!("task.{key}: {msg}")))
    }

    pub fn config(&self) -> &Config {
        &self.ctx.config
    }

    /// Tasks as `(task, enabled, record)`, by name.
    pub async fn snapshot(&self) -> Vec<(config::Task, bool, store::TaskRecord)> {
        let tasks = self.tasks.lock().await;
        tasks
            .values()
            .map(|h| {
                (
                    h.task.clone(),
                    h.enabled.load(Ordering::SeqCst),
                    self.ctx.store.record(&h.task.name),
                )
            })
            .collect()
    }

    async fn sender(&self, name: &str) -> Result<mpsc::Sender<Command>, Refusal> {
        let tasks = self.tasks.lock().await;
        tasks
            .get(name)
            .map(|h| h.tx.clone())
            .ok_or_else(|| Refusal::new(404, format!("task {name:?} does not exist")))
    }

    async fn ask<T>(
        &self,
        name: &str,
        make: impl FnOnce(oneshot::Sender<Result<T, String>>) -> Command,
    ) -> Result<T, Refusal> {
        let tx = self.sender(name).await?;
        let (reply, rx) = oneshot::channel();
        tx.send(make(reply))
            .await
            .map_err(|_| Refusal::new(404, format!("task {name:?} was deleted")))?;
        rx.await
            .map_err(|_| Refusal::new(500, "the task stopped before answering"))?
            .map_err(|e| Refusal::new(500, e))
    }

    /// Runs a task now, whatever its inputs.
    pub async fn run_now(&self, name: &str) -> Result<Option<Event>, Refusal> {
        self.ask(name, Command::RunNow).await
    }

    /// The plan a task would apply now.
    pub async fn inspect(&self, name: &str) -> Result<Plan, Refusal> {
        self.ask(name, Command::Inspect).await
    }

    pub async fn set_enabled(&self, name: &str, on: bool) -> Result<(), Refusal> {
        let tx = self.sender(name).await?;
        let from_api = {
            let tasks = self.tasks.lock().await;
            tasks.get(name).is_some_and(|h| h.from_api)
        };
        if from_api {
            self.ctx.store.set_enabled(name, on);
        }
        tx.send(Command::SetEnabled(on))
            .await
            .map_err(|_| Refusal::new(404, format!("task {name:?} was deleted")))
    }

    /// Checks and starts a task from the API.
    pub async fn create(&self, def: TaskConfig) -> Result<config::Task, Refusal> {
        if def.working_dir.is_some() {
            return Err(Refusal::new(
                400,
                "task.working_dir: cannot be set through the API (tasks created here live under mesh sync's working_dir)",
            ));
        }
        let task = self.check(&def)?;
        let mut tasks = self.tasks.lock().await;
        if tasks.contains_key(&task.name) {
            return Err(Refusal::new(
                409,
                format!("task {:?} already exists", task.name),
            ));
        }
        if tasks.len() >= config::MAX_TASKS {
            return Err(Refusal::new(
                429,
                format!(
                    "mesh sync runs {} tasks, the most it allows (MAX_TASKS)",
                    tasks.len()
                ),
            ));
        }
        self.ctx.store.put_api_task(&def);
        self.spawn(&mut tasks, task.clone(), true);
        Ok(task)
    }

    /// A plan for a task that does not exist yet (`POST /v1/tasks?run=inspect`).
    pub async fn inspect_new(&self, def: TaskConfig) -> Result<(config::Task, Plan), Refusal> {
        if def.working_dir.is_some() {
            return Err(Refusal::new(
                400,
                "task.working_dir: cannot be set through the API",
            ));
        }
        let mut task = self.check(&def)?;
        if self.tasks.lock().await.contains_key(&task.name) {
            return Err(Refusal::new(
                409,
                format!("task {:?} already exists", task.name),
            ));
        }
        task.working_dir = self
            .ctx
            .config
            .working_dir
            .join(".inspect")
            .join(&task.name);
        let mut runner = Runner::new(
            Arc::clone(&self.ctx),
            task.clone(),
            Arc::new(AtomicBool::new(false)),
        );
        if !runner.wait_ready(Some(runner::READY_TIMEOUT)).await {
            return Err(Refusal::new(
                504,
                "the task's sources could not be read in time",
            ));
        }
        let plan = runner.inspect().await.map_err(|e| Refusal::new(500, e))?;
        let _ = std::fs::remove_dir_all(&task.working_dir);
        Ok((task, plan))
    }

    /// Stops a task; an API task is forgotten, a config-file task comes
    /// back at the next start (as in CTS).
    pub async fn delete(&self, name: &str) -> Result<(), Refusal> {
        let mut tasks = self.tasks.lock().await;
        let handle = tasks
            .remove(name)
            .ok_or_else(|| Refusal::new(404, format!("task {name:?} does not exist")))?;
        if handle.from_api {
            self.ctx.store.forget(name);
        }
        Ok(())
    }

    /// Every enabled task once, concurrently (bounded): `true` if all
    /// succeeded.
    pub async fn once(self: &Arc<Self>) -> bool {
        let mut jobs = Vec::new();
        for task in self.ctx.config.tasks.iter().filter(|t| t.enabled).cloned() {
            let ctx = Arc::clone(&self.ctx);
            jobs.push(tokio::spawn(async move {
                let name = task.name.clone();
                let mut runner = Runner::new(ctx, task, Arc::new(AtomicBool::new(true)));
                if !runner.wait_ready(Some(runner::READY_TIMEOUT)).await {
                    eprintln!("task {name}: its sources could not be read in time");
                    return false;
                }
                match runner.apply_if_changed("once", false).await {
                    None => {
                        println!(
                            "task {name}: inputs unchanged since the last apply; nothing to do"
                        );
                        true
                    }
                    Some(ev) if ev.success => {
                        println!("task {name}: {}", ev.plan_summary.unwrap_or_default());
                        true
                    }
                    Some(ev) => {
                        eprintln!(
                            "task {name}: failed: {}",
                            ev.error.map(|e| e.message).unwrap_or_default()
                        );
                        false
                    }
                }
            }));
        }
        let mut all = true;
        for j in jobs {
            all &= j.await.unwrap_or(false);
        }
        all
    }

    /// Every task's plan, printed: `true` if every plan ran.
    pub async fn inspect_all(self: &Arc<Self>) -> bool {
        let mut all = true;
        for task in self.ctx.config.tasks.clone() {
            let name = task.name.clone();
            let mut runner = Runner::new(
                Arc::clone(&self.ctx),
                task,
                Arc::new(AtomicBool::new(false)),
            );
            if !runner.wait_ready(Some(runner::READY_TIMEOUT)).await {
                eprintln!("task {name}: its sources could not be read in time");
                all = false;
                continue;
            }
            match runner.inspect().await {
                Ok(plan) => {
                    println!("==> task {name}: changes present: {}", plan.changes_present);
                    println!("{}", plan.text);
                }
                Err(e) => {
                    eprintln!("task {name}: {e}");
                    all = false;
                }
            }
        }
        all
    }
}
