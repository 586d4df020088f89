//! `mesh connect proxy` (the built-in sidecar) and `mesh connect ca ...`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use mesh_client::Method;
use serde_json::{json, Value};

use crate::output::{print_json, print_table, Format, HttpArgs};

/// `mesh connect ...`
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    #[command(subcommand)]
    pub command: ConnectCommand,
}

/// Connect commands.
#[derive(Debug, Clone, Subcommand)]
pub enum ConnectCommand {
    /// Run the built-in mTLS sidecar proxy
    Proxy(ProxyArgs),
    /// Run Envoy as a sidecar, configured by the agent over xDS
    Envoy(Box<crate::connect_envoy::EnvoyArgs>),
    /// Print the xDS bootstrap for a proxyless gRPC client (GRPC_XDS_BOOTSTRAP)
    #[command(name = "grpc-bootstrap")]
    GrpcBootstrap(GrpcBootstrapArgs),
    /// Inspect and configure the Connect CA
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
}

/// Flags of `mesh connect grpc-bootstrap`.
#[derive(Debug, Clone, Args)]
pub struct GrpcBootstrapArgs {
    /// The client's xDS node ID (any name that is not a proxy registered with the agent)
    #[arg(long = "node-id", value_name = "ID")]
    pub node_id: String,
    /// The agent's gRPC (xDS) address [default: $MESH_GRPC_ADDR, $CONSUL_GRPC_ADDR, or the agent's own]
    #[arg(long = "grpc-addr", value_name = "ADDR")]
    pub grpc_addr: Option<String>,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// Flags of `mesh connect proxy`.
#[derive(Debug, Clone, Args)]
pub struct ProxyArgs {
    /// Log level: trace, debug, info, warn, error
    #[arg(long = "log-level", default_value = "info", value_name = "LEVEL")]
    pub log_level: String,
    /// Log JSON lines
    #[arg(long = "log-json")]
    pub log_json: bool,
    /// Run as the sidecar registered on the agent with this service ID
    #[arg(long = "sidecar-for", value_name = "ID", conflicts_with = "service")]
    pub sidecar_for: Option<String>,
    /// Ad hoc: the service this proxy fronts (registers NAME-proxy with the agent)
    #[arg(long)]
    pub service: Option<String>,
    /// Ad hoc: the public mTLS listener address
    #[arg(long, value_name = "ADDR", requires = "service")]
    pub listen: Option<SocketAddr>,
    /// Ad hoc: where the local application listens
    #[arg(long = "service-addr", value_name = "ADDR", requires = "service")]
    pub service_addr: Option<SocketAddr>,
    /// Ad hoc: NAME:PORT, an upstream listener on 127.0.0.1:PORT (repeatable)
    #[arg(long, value_name = "NAME:PORT")]
    pub upstream: Vec<String>,
    /// Admin listener for /ready and /metrics (default: the sidecar's proxy
    /// config `admin_bind_addr` or `envoy_prometheus_bind_addr`, if set)
    #[arg(long = "admin-bind", value_name = "ADDR")]
    pub admin_bind: Option<SocketAddr>,
    /// Data-path threads: 1 runs the proxy on one thread, 0 one per core
    #[arg(long, value_name = "N", default_value_t = mesh_proxy::DEFAULT_WORKERS)]
    pub workers: usize,
    /// Run as a gateway (`ingress`, `terminating`) for the service named by -service
    #[arg(long, value_enum, requires = "service")]
    pub gateway: Option<GatewayKind>,
    /// With -gateway: register the gateway with the agent (and deregister on exit)
    #[arg(long, requires = "gateway")]
    pub register: bool,
    /// With -gateway -register: the address its listeners bind and the catalog shows
    #[arg(long, value_name = "IP", requires = "register")]
    pub address: Option<std::net::IpAddr>,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// Gateways the built-in proxy runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GatewayKind {
    Ingress,
    Terminating,
}

impl GatewayKind {
    pub(crate) fn service_kind(self) -> &'static str {
        match self {
            GatewayKind::Ingress => "ingress-gateway",
            GatewayKind::Terminating => "terminating-gateway",
        }
    }
}

/// `mesh connect ca ...`
#[derive(Debug, Clone, Subcommand)]
pub enum CaCommand {
    /// Print the CA configuration
    GetConfig {
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Set the CA configuration from a JSON file (a key change starts a staged rotation)
    SetConfig {
        #[arg(long = "config-file", value_name = "FILE")]
        config_file: PathBuf,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// List the roots in the trust bundle
    Roots {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Show the rotation under way: stage, progress, times
    Rotation {
        #[command(flatten)]
        http: HttpArgs,
    },
}

/// Runs a connect command.
pub async fn run(args: &ConnectArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        ConnectCommand::Proxy(p) => proxy(p).await,
        ConnectCommand::Envoy(e) => crate::connect_envoy::run(e).await,
        ConnectCommand::GrpcBootstrap(g) => grpc_bootstrap(g).await,
        ConnectCommand::Ca { command } => ca(command).await,
    }
}

async fn ca(cmd: &CaCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CaCommand::GetConfig { http } => {
            let v = http
                .client()?
                .get_json("connect/ca/configuration", &[])
                .await?;
            print_json(&v.unwrap_or_default())?;
        }
        CaCommand::SetConfig { config_file, http } => {
            let text = std::fs::read_to_string(config_file)
                .with_context(|| format!("read {}", config_file.display()))?;
            let body: Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: invalid JSON", config_file.display()))?;
            let v = http
                .client()?
                .write_json(Method::PUT, "connect/ca/configuration", &[], Some(&body))
                .await?;
            if v["Rotating"] == true {
                println!(
                    "Configuration updated; a new root is pending (see `mesh connect ca rotation`)"
                );
            } else {
                println!("Configuration updated");
            }
        }
        CaCommand::Roots { format, http } => {
            let v = http
                .client()?
                .get_json("connect/ca/roots", &[])
                .await?
                .unwrap_or_default();
            match format {
                Format::Json => print_json(&v)?,
                Format::Table => {
                    let rows: Vec<Vec<String>> = v["Roots"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|r| {
                            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                            vec![
                                s("ID").chars().take(23).collect(),
                                s("Stage"),
                                format!("{} {}", s("PrivateKeyType"), r["PrivateKeyBits"]),
                                s("NotAfter"),
                            ]
                        })
                        .collect();
                    println!(
                        "Trust domain: {}",
                        v["TrustDomain"].as_str().unwrap_or_default()
                    );
                    print_table(&["ID", "Stage", "Key", "NotAfter"], &rows);
                }
            }
        }
        CaCommand::Rotation { http } => {
            let v = http
                .client()?
                .get_json("connect/ca/rotation", &[])
                .await?
                .unwrap_or_default();
            println!("Stage:       {}", v["Stage"].as_str().unwrap_or_default());
            if v["Stage"] != "none" {
                println!(
                    "New root:    {}",
                    v["NewRootID"].as_str().unwrap_or_default()
                );
                println!(
                    "Old root:    {}",
                    v["OldRootID"].as_str().unwrap_or_default()
                );
                println!(
                    "Started:     {}",
                    v["StartedAt"].as_str().unwrap_or_default()
                );
                println!("Activated:   {}", v["ActivatedAt"].as_str().unwrap_or("-"));
                println!(
                    "Progress:    {}/{} leaves re-issued",
                    v["Reissued"], v["Total"]
                );
                println!(
                    "Old retires: {}",
                    v["OldRootRetiresAt"].as_str().unwrap_or("-")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Registers gateway `name` with the agent at `address` (an IP, and for a
/// terminating gateway the port of its mTLS listener, which mesh services
/// dial).
pub(crate) async fn register_gateway(
    client: &mesh_client::Client,
    kind: GatewayKind,
    name: &str,
    address: Option<(std::net::IpAddr, Option<u16>)>,
) -> anyhow::Result<()> {
    let mut body = json!({"ID": name, "Name": name, "Kind": kind.service_kind()});
    if let Some((ip, _)) = address {
        body["Address"] = json!(ip.to_string());
    }
    match (kind, address.and_then(|(_, port)| port)) {
        (GatewayKind::Terminating, Some(port)) => body["Port"] = json!(port),
        (GatewayKind::Terminating, None) => {
            bail!("-gateway terminating -register needs its mTLS listener's address (IP:PORT)")
        }
        (GatewayKind::Ingress, port) => {
            if let Some(port) = port {
                body["Port"] = json!(port);
            }
        }
    }
    client
        .write_json(Method::PUT, "agent/service/register", &[], Some(&body))
        .await?;
    Ok(())
}

/// Register an ad-hoc proxy service with the agent; returns its ID.
async fn register_adhoc(p: &ProxyArgs, client: &mesh_client::Client) -> anyhow::Result<String> {
    let name = p.service.clone().expect("clap requires -service");
    let (Some(listen), Some(app)) = (p.listen, p.service_addr) else {
        bail!("-service needs -listen ADDR and -service-addr ADDR");
    };
    let mut upstreams = Vec::new();
    for u in &p.upstream {
        let (dest, port) = u
            .rsplit_once(':')
            .with_context(|| format!("-upstream {u:?}: expected NAME:PORT"))?;
        let port: u16 = port
            .parse()
            .with_context(|| format!("-upstream {u:?}: bad port"))?;
        upstreams.push(json!({"DestinationName": dest, "LocalBindPort": port}));
    }
    let id = format!("{name}-proxy");
    let body = json!({
        "ID": id, "Name": format!("{name}-proxy"), "Kind": "connect-proxy",
        "Address": listen.ip().to_string(), "Port": listen.port(),
        "Proxy": {
            "DestinationServiceName": name,
            "LocalServiceAddress": app.ip().to_string(),
            "LocalServicePort": app.port(),
            "Upstreams": upstreams,
        }
    });
    client
        .write_json(Method::PUT, "agent/service/register", &[], Some(&body))
        .await?;
    Ok(id)
}

async fn proxy(p: &ProxyArgs) -> anyhow::Result<ExitCode> {
    // The proxy logs like the agent (RUST_LOG overrides the level).
    let _ = crate::logging::init(&crate::logging::LogSettings {
        level: &p.log_level,
        json: p.log_json,
        file: None,
    });
    let client = p.http.client()?;
    let (id, adhoc) = match (&p.sidecar_for, &p.service, p.gateway) {
        (None, Some(name), Some(kind)) => {
            if p.register {
                let listen = p.listen.map(|a| (a.ip(), Some(a.port())));
                register_gateway(
                    &client,
                    kind,
                    name,
                    listen.or(p.address.map(|ip| (ip, None))),
                )
                .await?;
            }
            (name.clone(), p.register)
        }
        (Some(id), None, _) => (format!("{id}-sidecar-proxy"), false),
        (None, Some(_), None) => (register_adhoc(p, &client).await?, true),
        _ => bail!("give -sidecar-for ID, or -service NAME with -listen and -service-addr"),
    };
    let mut def = client.get_json(&format!("agent/service/{id}"), &[]).await?;
    // A sidecar registered under its own ID works too.
    let id = match (&def, &p.sidecar_for) {
        (None, Some(own)) if !adhoc => {
            def = client
                .get_json(&format!("agent/service/{own}"), &[])
                .await?;
            own.clone()
        }
        _ => id,
    };
    // A sidecar for a service this agent does not have would never serve:
    // say so now rather than report ready and retry forever.
    if let (None, Some(own)) = (&def, &p.sidecar_for) {
        bail!(
            "no sidecar proxy registered for {own:?} on this agent (looked for \
             \"{own}-sidecar-proxy\" and \"{own}\"): register the service with a \
             `connect {{ sidecar_service {{}} }}` block first"
        );
    }
    // -admin-bind wins; else the registration's proxy config may name one.
    let admin_bind = match (p.admin_bind, &def) {
        (Some(addr), _) => Some(addr),
        (None, Some(def)) => mesh_proxy::admin_bind_addr(&def["Proxy"]["Config"])
            .map_err(|e| anyhow::anyhow!("service {id}: {e}"))?,
        (None, None) => None,
    };
    let base = client.base_url().to_string();
    let mut source = mesh_proxy::SourceConfig::new(base, id.clone());
    source.token = p.http.token.clone().or_else(mesh_client::env_token);
    // Same agent, same TLS roots (-ca-file) as the CLI's own requests.
    source.http = Some(client.http().clone());
    let (snapshots, _poller) = mesh_proxy::source::spawn(source);
    let admin = match admin_bind {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for admin on {addr}"))?,
        ),
        None => None,
    };
    let handle = mesh_proxy::Proxy::spawn(snapshots, admin, async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    });
    let mut bound = handle.bound();
    // Tell people (and tests) where it listens, once the first snapshot applied.
    let _ = bound
        .wait_for(|b| {
            // A gateway has no public listener: ready once its first snapshot applied.
            b.public.is_some() || !b.errors.is_empty() || (p.gateway.is_some() && b.index > 0)
        })
        .await;
    {
        let b = bound.borrow();
        for e in &b.errors {
            eprintln!("proxy: {e}");
        }
        println!(
            "==> mesh connect proxy ready: id={id} public={} upstreams={} admin={}",
            b.public.map(|a| a.to_string()).unwrap_or_default(),
            b.upstreams
                .iter()
                .map(|(n, a)| format!("{n}@{a}"))
                .collect::<Vec<_>>()
                .join(","),
            b.admin.map(|a| a.to_string()).unwrap_or_default(),
        );
    }
    handle.join().await;
    if adhoc {
        let _ = client
            .write_json(
                Method::PUT,
                &format!("agent/service/deregister/{id}"),
                &[],
                None,
            )
            .await;
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the bootstrap a proxyless gRPC client needs to reach this agent.
async fn grpc_bootstrap(args: &GrpcBootstrapArgs) -> anyhow::Result<ExitCode> {
    if args.node_id.trim().is_empty() {
        bail!("-node-id: give the client a name (its xDS node ID)");
    }
    let client = args.http.client()?;
    let (host, port) = crate::connect_envoy::grpc_addr(args.grpc_addr.as_deref(), &client).await?;
    let bootstrap = mesh_xds::bootstrap::grpc_bootstrap(&args.node_id, &host, port);
    println!("{}", serde_json::to_string_pretty(&bootstrap)?);
    Ok(ExitCode::SUCCESS)
}
