//! `mesh catalog services|nodes|datacenters`, `mesh services register|deregister`,
//! `mesh snapshot save|restore`, `mesh reload`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use mesh_client::Method;
use serde_json::Value;

use crate::output::{print_json, print_table, Format, HttpArgs};

/// `mesh catalog ...`
#[derive(Debug, Clone, Args)]
pub struct CatalogArgs {
    #[command(subcommand)]
    pub command: CatalogCommand,
}

/// Catalog reads.
#[derive(Debug, Clone, Subcommand)]
pub enum CatalogCommand {
    /// List services (with -tags, their tags)
    Services {
        /// Show each service's tags
        #[arg(long)]
        tags: bool,
        /// Only services on this node
        #[arg(long)]
        node: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// List nodes (with -service, only nodes running it)
    Nodes {
        /// Only nodes that run this service
        #[arg(long)]
        service: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// List datacenters
    Datacenters {
        #[command(flatten)]
        http: HttpArgs,
    },
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Runs a catalog command.
pub async fn run(args: &CatalogArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        CatalogCommand::Services {
            tags,
            node,
            format,
            http,
        } => {
            let client = http.client()?;
            let services: BTreeMap<String, Vec<String>> = match node {
                Some(node) => {
                    let Some(v) = client
                        .get_json(&format!("catalog/node/{node}"), &[])
                        .await?
                    else {
                        bail!("node {node:?} not found");
                    };
                    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
                    for svc in v["Services"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(_, s)| s)
                    {
                        let tags = out.entry(s(&svc["Service"])).or_default();
                        for t in svc["Tags"].as_array().into_iter().flatten() {
                            if !tags.contains(&s(t)) {
                                tags.push(s(t));
                            }
                        }
                    }
                    out
                }
                None => serde_json::from_value(
                    client
                        .get_json("catalog/services", &[])
                        .await?
                        .unwrap_or_default(),
                )
                .context("decode /v1/catalog/services")?,
            };
            match format {
                Format::Json => print_json(&services)?,
                Format::Table if *tags => print_table(
                    &["Service", "Tags"],
                    &services
                        .iter()
                        .map(|(n, t)| vec![n.clone(), t.join(",")])
                        .collect::<Vec<_>>(),
                ),
                Format::Table => {
                    for name in services.keys() {
                        println!("{name}");
                    }
                }
            }
        }
        CatalogCommand::Nodes {
            service,
            format,
            http,
        } => {
            let client = http.client()?;
            let list = match service {
                Some(svc) => {
                    client
                        .get_json(&format!("catalog/service/{svc}"), &[])
                        .await?
                }
                None => client.get_json("catalog/nodes", &[]).await?,
            }
            .unwrap_or_default();
            let list = list.as_array().cloned().unwrap_or_default();
            match format {
                Format::Json => print_json(&list)?,
                Format::Table => {
                    let mut rows: Vec<Vec<String>> = list
                        .iter()
                        .map(|n| {
                            vec![
                                s(&n["Node"]),
                                s(&n["ID"]).chars().take(8).collect(),
                                s(&n["Address"]),
                                s(&n["Datacenter"]),
                            ]
                        })
                        .collect();
                    rows.dedup();
                    print_table(&["Node", "ID", "Address", "DC"], &rows);
                }
            }
        }
        CatalogCommand::Datacenters { http } => {
            let v = http.client()?.get_json("catalog/datacenters", &[]).await?;
            for dc in v.and_then(|v| v.as_array().cloned()).unwrap_or_default() {
                println!("{}", s(&dc));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `mesh services ...`
#[derive(Debug, Clone, Args)]
pub struct ServicesArgs {
    #[command(subcommand)]
    pub command: ServicesCommand,
}

/// Registering services with the local agent.
#[derive(Debug, Clone, Subcommand)]
pub enum ServicesCommand {
    /// Register the services defined in FILE (HCL or JSON, `service {}` / `services []`)
    Register {
        file: PathBuf,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Deregister a service by ID (or the services defined in FILE)
    Deregister {
        /// The service ID
        #[arg(long)]
        id: Option<String>,
        file: Option<PathBuf>,
        #[command(flatten)]
        http: HttpArgs,
    },
}

/// The service definitions in an HCL or JSON file, as JSON objects.
fn service_definitions(path: &PathBuf) -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let v: Value = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))?
    } else {
        hcl::from_str(&text).with_context(|| format!("{}: invalid HCL", path.display()))?
    };
    let mut out = Vec::new();
    for (key, value) in v.as_object().into_iter().flatten() {
        match key.as_str() {
            "service" | "Service" => match value {
                Value::Array(items) => out.extend(items.iter().cloned()),
                other => out.push(other.clone()),
            },
            "services" | "Services" => out.extend(value.as_array().into_iter().flatten().cloned()),
            other => bail!(
                "{}: unexpected top-level key {other:?} (expected service or services)",
                path.display()
            ),
        }
    }
    if out.is_empty() {
        bail!("{}: no service definitions found", path.display());
    }
    Ok(out)
}

/// Runs a services command.
pub async fn run_services(args: &ServicesArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        ServicesCommand::Register { file, http } => {
            let client = http.client()?;
            for def in service_definitions(file)? {
                client
                    .write_json(Method::PUT, "agent/service/register", &[], Some(&def))
                    .await?;
                let name = def
                    .get("name")
                    .or_else(|| def.get("Name"))
                    .map(s)
                    .unwrap_or_default();
                println!("Registered service: {name}");
            }
        }
        ServicesCommand::Deregister { id, file, http } => {
            let client = http.client()?;
            let ids: Vec<String> = match (id, file) {
                (Some(id), None) => vec![id.clone()],
                (None, Some(file)) => service_definitions(file)?
                    .iter()
                    .map(|d| {
                        let get = |k: &str| d.get(k).or_else(|| d.get(k.to_ascii_lowercase()));
                        s(get("ID").or_else(|| get("Name")).unwrap_or(&Value::Null))
                    })
                    .collect(),
                _ => bail!("give either -id or a FILE"),
            };
            for id in ids {
                client
                    .write_json(
                        Method::PUT,
                        &format!("agent/service/deregister/{id}"),
                        &[],
                        None,
                    )
                    .await?;
                println!("Deregistered service: {id}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `mesh snapshot save|restore FILE`
#[derive(Debug, Clone, Args)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub command: SnapshotCommand,
}

/// Snapshot commands.
#[derive(Debug, Clone, Subcommand)]
pub enum SnapshotCommand {
    /// Save the cluster state to FILE
    Save {
        file: PathBuf,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Replace the cluster state with FILE
    Restore {
        file: PathBuf,
        #[command(flatten)]
        http: HttpArgs,
    },
}

/// Runs a snapshot command.
pub async fn run_snapshot(args: &SnapshotArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        SnapshotCommand::Save { file, http } => {
            let bytes = http.client()?.get_bytes("snapshot").await?;
            // Write beside, then rename: a failed save never leaves half a file.
            let tmp = file.with_extension("part");
            std::fs::write(&tmp, &bytes).with_context(|| format!("write {}", tmp.display()))?;
            std::fs::rename(&tmp, file).with_context(|| format!("rename to {}", file.display()))?;
            println!(
                "Saved and verified snapshot to {} ({} bytes)",
                file.display(),
                bytes.len()
            );
        }
        SnapshotCommand::Restore { file, http } => {
            let bytes = std::fs::read(file).with_context(|| format!("read {}", file.display()))?;
            http.client()?.put_bytes("snapshot", bytes).await?;
            println!("Restored snapshot");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `mesh reload`: the agent re-reads its config files and applies them.
pub async fn reload(http: &HttpArgs) -> anyhow::Result<ExitCode> {
    let v = http
        .client()?
        .write_json(Method::PUT, "agent/reload", &[], None)
        .await?;
    println!("Configuration reload triggered");
    if let Some(summary) = v.get("Summary").and_then(Value::as_str) {
        println!("{summary}");
    }
    Ok(ExitCode::SUCCESS)
}
