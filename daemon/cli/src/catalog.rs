//! `mesh catalog services|nodes|datacenters`, `mesh services register|deregister`,
//! `mesh snapshot save|restore`, `mesh reload`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use mesh_client::Method;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

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
/// The service definitions in a file, read as the agent reads mesh.d files:
/// unknown keys and type errors name file:line:col.
fn service_definitions(path: &PathBuf) -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let format = mesh_config::Format::from_path(path).unwrap_or(mesh_config::Format::Hcl);
    let decls = mesh_config::parse_resources(&text, format, path)?;
    let mut out = Vec::new();
    for decl in decls {
        match decl.kind {
            mesh_config::ResourceKind::Service => out.push(decl.value),
            other => bail!(
                "{}: a {other} is not a service; declare it in a config dir (mesh.d) or use its own command",
                decl.loc
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

/// `mesh snapshot save|restore|inspect FILE`
#[derive(Debug, Clone, Args)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub command: SnapshotCommand,
}

/// Snapshot commands.
#[derive(Debug, Clone, Subcommand)]
pub enum SnapshotCommand {
    /// Save the cluster state to FILE, then read it back and check it
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
    /// Print what a snapshot FILE holds, without an agent
    Inspect { file: PathBuf },
}

/// Runs a snapshot command.
pub async fn run_snapshot(args: &SnapshotArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        SnapshotCommand::Save { file, http } => {
            let bytes = http.client()?.get_bytes("snapshot").await?;
            let summary = mesh_state::inspect_snapshot(&bytes)
                .context("the agent sent a snapshot that does not decode; nothing was written")?;
            let sent = Sha256::digest(&bytes);
            // Write beside, sync, then rename: a failed save never leaves half a file.
            let tmp = file.with_extension("part");
            write_synced(&tmp, &bytes).with_context(|| format!("write {}", tmp.display()))?;
            std::fs::rename(&tmp, file).with_context(|| format!("rename to {}", file.display()))?;
            // Verify what is on disk, not what is in memory.
            let written =
                std::fs::read(file).with_context(|| format!("read back {}", file.display()))?;
            if Sha256::digest(&written) != sent {
                anyhow::bail!(
                    "{} does not hold what the agent sent (checksum differs); do not rely on it",
                    file.display()
                );
            }
            mesh_state::inspect_snapshot(&written)
                .with_context(|| format!("{} does not decode after writing", file.display()))?;
            println!(
                "Saved and verified snapshot to index {} ({}, {} bytes, sha256 {})",
                summary.index,
                file.display(),
                written.len(),
                hex(&sent)
            );
        }
        SnapshotCommand::Restore { file, http } => {
            let bytes = std::fs::read(file).with_context(|| format!("read {}", file.display()))?;
            mesh_state::inspect_snapshot(&bytes).with_context(|| {
                format!("{} is not a snapshot mesh can restore", file.display())
            })?;
            http.client()?.put_bytes("snapshot", bytes).await?;
            println!("Restored snapshot");
        }
        SnapshotCommand::Inspect { file } => {
            let bytes = std::fs::read(file).with_context(|| format!("read {}", file.display()))?;
            let summary = mesh_state::inspect_snapshot(&bytes)
                .with_context(|| format!("{} is not a readable snapshot", file.display()))?;
            let rows = vec![
                vec!["Index".to_string(), summary.index.to_string()],
                vec!["Size".to_string(), bytes.len().to_string()],
                vec!["Format".to_string(), summary.format.to_string()],
                vec!["SHA256".to_string(), hex(&Sha256::digest(&bytes))],
            ];
            for row in &rows {
                println!(" {:<10}{}", row[0], row[1]);
            }
            println!();
            let tables: Vec<Vec<String>> = summary
                .tables
                .iter()
                .map(|(name, count)| vec![name.to_string(), count.to_string()])
                .collect();
            print_table(&["Type", "Count"], &tables);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_synced(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
