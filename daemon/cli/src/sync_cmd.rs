//! `mesh sync`: the consul-terraform-sync daemon (`-config-file`,
//! `-config-dir`, `-once`, `-inspect`) and `mesh sync task …`, which talks
//! to a running daemon's API.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use mesh_sync::{api, config, Daemon, Mode};
use serde_json::{json, Value};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SyncArgs {
    /// A config file (HCL or JSON); repeatable
    #[arg(long = "config-file", value_name = "FILE")]
    pub config_file: Vec<PathBuf>,
    /// A directory of config files; repeatable
    #[arg(long = "config-dir", value_name = "DIR")]
    pub config_dir: Vec<PathBuf>,
    /// Run every task once (when its inputs changed) and exit
    #[arg(long)]
    pub once: bool,
    /// Print what each task would change, change nothing, and exit
    #[arg(long)]
    pub inspect: bool,
    /// Check the configuration and exit
    #[arg(long)]
    pub validate: bool,
    #[command(subcommand)]
    pub command: Option<SyncCommand>,
}

#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Manage the tasks of a running `mesh sync`
    Task(TaskArgs),
}

#[derive(Debug, Args)]
pub struct TaskArgs {
    #[command(subcommand)]
    pub command: TaskCommand,
}

/// Where the daemon's API is.
#[derive(Debug, Clone, Args)]
pub struct SyncHttp {
    /// The mesh sync API
    #[arg(
        long = "http-addr",
        default_value = "127.0.0.1:8558",
        env = "MESH_SYNC_HTTP_ADDR"
    )]
    pub http_addr: String,
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Enable a task (and run it if its inputs changed)
    Enable {
        #[command(flatten)]
        http: SyncHttp,
        name: String,
    },
    /// Disable a task: it stops running until enabled
    Disable {
        #[command(flatten)]
        http: SyncHttp,
        name: String,
    },
    /// Create a task from a file holding one `task { }` block (HCL or JSON)
    Create {
        #[command(flatten)]
        http: SyncHttp,
        /// The task file
        #[arg(long = "task-file", value_name = "FILE")]
        task_file: PathBuf,
        /// Run the task right after creating it
        #[arg(long = "run-now")]
        run_now: bool,
    },
    /// Delete a task
    Delete {
        #[command(flatten)]
        http: SyncHttp,
        name: String,
    },
    /// Show tasks and their last runs
    Status {
        #[command(flatten)]
        http: SyncHttp,
        /// Only this task
        name: Option<String>,
    },
}

pub async fn run(args: &SyncArgs) -> anyhow::Result<ExitCode> {
    if let Some(SyncCommand::Task(t)) = &args.command {
        return task_command(&t.command).await;
    }
    let files = config::config_files(&args.config_file, &args.config_dir)?;
    let cfg = config::load(&files).map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in &cfg.warnings {
        eprintln!("warning: {w}");
    }
    if args.validate {
        println!("The configuration is valid: {} task(s).", cfg.tasks.len());
        return Ok(ExitCode::SUCCESS);
    }
    init_logging(&cfg.log_level);
    let mode = match (args.once, args.inspect) {
        (true, true) => bail!("give -once or -inspect, not both"),
        (true, false) => Mode::Once,
        (false, true) => Mode::Inspect,
        (false, false) => Mode::Daemon,
    };
    let bind = (cfg.bind, cfg.port);
    let daemon = Daemon::start(cfg, mode == Mode::Daemon)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    match mode {
        Mode::Once => {
            return Ok(if daemon.once().await {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Mode::Inspect => {
            return Ok(if daemon.inspect_all().await {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Mode::Daemon => {}
    }
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("mesh sync API: cannot listen on {}:{}", bind.0, bind.1))?;
    let addr = listener.local_addr()?;
    // Tests and scripts read this line to find a port chosen with `port = 0`.
    println!("==> mesh sync API listening on http://{addr}");
    tracing::info!(%addr, "mesh sync: API listening");
    let mut terminate = signal(SignalKind::terminate())?;
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    };
    api::serve(daemon, listener, stop).await?;
    Ok(ExitCode::SUCCESS)
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("warn,mesh_sync={level},mesh={level}"))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn base(http: &SyncHttp) -> String {
    if http.http_addr.contains("://") {
        http.http_addr.trim_end_matches('/').to_string()
    } else {
        format!("http://{}", http.http_addr)
    }
}

async fn call(
    method: reqwest::Method,
    http: &SyncHttp,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    // mesh-client's HTTP client: rustls with ring, no proxies.
    let client = mesh_client::Client::new(&base(http))?.http().clone();
    let url = format!("{}{path}", base(http));
    let mut req = client.request(method, &url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach mesh sync at {}", base(http)))?;
    let status = resp.status();
    let value: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let msg = value["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| status.to_string());
        bail!("{msg}");
    }
    Ok(value)
}

async fn task_command(cmd: &TaskCommand) -> anyhow::Result<ExitCode> {
    use reqwest::Method;
    match cmd {
        TaskCommand::Enable { http, name } => {
            call(
                Method::PATCH,
                http,
                &format!("/v1/tasks/{name}"),
                Some(json!({"enabled": true})),
            )
            .await?;
            println!("Task {name:?} enabled.");
        }
        TaskCommand::Disable { http, name } => {
            call(
                Method::PATCH,
                http,
                &format!("/v1/tasks/{name}"),
                Some(json!({"enabled": false})),
            )
            .await?;
            println!("Task {name:?} disabled.");
        }
        TaskCommand::Delete { http, name } => {
            call(Method::DELETE, http, &format!("/v1/tasks/{name}"), None).await?;
            println!("Task {name:?} deleted.");
        }
        TaskCommand::Create {
            http,
            task_file,
            run_now,
        } => {
            let task = read_task_file(task_file)?;
            let name = task.name.clone();
            let path = if *run_now {
                "/v1/tasks?run=now"
            } else {
                "/v1/tasks"
            };
            call(Method::POST, http, path, Some(json!({"task": task}))).await?;
            println!("Task {name:?} created.");
        }
        TaskCommand::Status { http, name } => {
            let path = match name {
                Some(n) => format!("/v1/status/tasks/{n}?include=events"),
                None => "/v1/status/tasks".to_string(),
            };
            let v = call(Method::GET, http, &path, None).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One `task { }` block from a file, checked for syntax with file:line:col.
fn read_task_file(path: &std::path::Path) -> anyhow::Result<config::TaskConfig> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct TaskFile {
        task: config::TaskConfig,
    }
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let format = mesh_config::Format::from_path(path).unwrap_or(mesh_config::Format::Hcl);
    let (file, _): (TaskFile, _) = mesh_config::parse_document(&text, format, path)?;
    Ok(file.task)
}
