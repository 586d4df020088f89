//! `mesh connect envoy`: write the Envoy bootstrap for a registered
//! connect proxy and exec Envoy on it (or print it with `-bootstrap`).
//! Everything is checked before Envoy starts: the proxy exists on the
//! agent, is a connect proxy, and the agent serves xDS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::Value;

use crate::output::HttpArgs;

/// Flags of `mesh connect envoy` (Consul's names).
#[derive(Debug, Clone, Args)]
pub struct EnvoyArgs {
    /// The service ID whose sidecar this Envoy is (its proxy is found on the agent)
    #[arg(long = "sidecar-for", value_name = "ID", conflicts_with = "proxy_id")]
    pub sidecar_for: Option<String>,
    /// The proxy's own service ID
    #[arg(long = "proxy-id", value_name = "ID")]
    pub proxy_id: Option<String>,
    /// Envoy's admin listener
    #[arg(
        long = "admin-bind",
        value_name = "ADDR",
        default_value = "127.0.0.1:19000"
    )]
    pub admin_bind: SocketAddr,
    /// Print the bootstrap JSON and exit, without starting Envoy
    #[arg(long)]
    pub bootstrap: bool,
    /// The Envoy binary [default: `envoy` on PATH]
    #[arg(long = "envoy-binary", value_name = "PATH", default_value = "envoy")]
    pub envoy_binary: PathBuf,
    /// The agent's gRPC (xDS) address [default: $MESH_GRPC_ADDR, $CONSUL_GRPC_ADDR, or the agent's own]
    #[arg(long = "grpc-addr", value_name = "ADDR")]
    pub grpc_addr: Option<String>,
    /// CA file for the agent's gRPC TLS port [default: $MESH_GRPC_CACERT, $CONSUL_GRPC_CACERT, or -ca-file]
    #[arg(long = "grpc-ca-file", value_name = "FILE")]
    pub grpc_ca_file: Option<PathBuf>,
    /// State-of-the-world xDS instead of incremental (delta)
    #[arg(long = "sotw")]
    pub sotw: bool,
    /// Run Envoy as a gateway (`ingress`, `terminating`) for the service named by -service
    #[arg(long, value_enum, requires = "service", conflicts_with = "sidecar_for")]
    pub gateway: Option<crate::connect::GatewayKind>,
    /// With -gateway: the gateway's service name (and ID, unless -proxy-id)
    #[arg(long, value_name = "NAME", requires = "gateway")]
    pub service: Option<String>,
    /// With -gateway: register the gateway with the agent first
    #[arg(long, requires = "gateway")]
    pub register: bool,
    /// With -gateway -register: IP[:PORT] the catalog shows; a terminating
    /// gateway's mTLS listener binds it
    #[arg(long, value_name = "IP[:PORT]", requires = "register")]
    pub address: Option<String>,
    #[command(flatten)]
    pub http: HttpArgs,
    /// Passed to Envoy after `--`
    #[arg(last = true, value_name = "ENVOY ARGS")]
    pub envoy_args: Vec<String>,
}

/// The registered connect proxy to configure.
struct Proxy {
    id: String,
    destination: String,
    prometheus: Option<(String, u16)>,
}

/// `-address`: an IP, or IP:PORT.
fn parse_address(text: &str) -> anyhow::Result<(std::net::IpAddr, Option<u16>)> {
    if let Ok(ip) = text.parse() {
        return Ok((ip, None));
    }
    let addr: SocketAddr = text
        .parse()
        .with_context(|| format!("-address {text:?}: expected IP or IP:PORT"))?;
    Ok((addr.ip(), Some(addr.port())))
}

/// The registered gateway to configure, registered first with -register.
async fn find_gateway(
    args: &EnvoyArgs,
    kind: crate::connect::GatewayKind,
    client: &mesh_client::Client,
) -> anyhow::Result<Proxy> {
    let name = args.service.clone().expect("clap requires -service");
    if args.register {
        let address = args.address.as_deref().map(parse_address).transpose()?;
        crate::connect::register_gateway(client, kind, &name, address).await?;
    }
    let id = args.proxy_id.clone().unwrap_or(name);
    let Some(def) = client.get_json(&format!("agent/service/{id}"), &[]).await? else {
        bail!("no gateway with ID {id:?} is registered with this agent (register it, or give -register)");
    };
    if def["Kind"] != kind.service_kind() {
        bail!(
            "service {id:?} is of kind {}, not {}",
            def["Kind"],
            kind.service_kind()
        );
    }
    Ok(Proxy {
        id,
        destination: def["Service"].as_str().unwrap_or_default().to_string(),
        prometheus: prometheus_addr(&def)?,
    })
}

fn prometheus_addr(def: &Value) -> anyhow::Result<Option<(String, u16)>> {
    match def["Proxy"]["Config"]["envoy_prometheus_bind_addr"].as_str() {
        None => Ok(None),
        Some(text) => {
            let addr: SocketAddr = text.parse().with_context(|| {
                format!(
                    "service {}: envoy_prometheus_bind_addr {text:?} is not IP:PORT",
                    def["ID"]
                )
            })?;
            Ok(Some((addr.ip().to_string(), addr.port())))
        }
    }
}

async fn find_proxy(args: &EnvoyArgs, client: &mesh_client::Client) -> anyhow::Result<Proxy> {
    if let Some(kind) = args.gateway {
        return find_gateway(args, kind, client).await;
    }
    let id = match (&args.proxy_id, &args.sidecar_for) {
        (Some(id), _) => id.clone(),
        (None, Some(service)) => {
            let services = client
                .get_json("agent/services", &[])
                .await?
                .unwrap_or_default();
            let sidecars: Vec<String> = services
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, s)| {
                    s["Kind"] == "connect-proxy" && s["Proxy"]["DestinationServiceID"] == **service
                })
                .map(|(id, _)| id.clone())
                .collect();
            match sidecars.as_slice() {
                [one] => one.clone(),
                [] => bail!("-sidecar-for {service:?}: no connect proxy on this agent fronts a service with that ID (register it with a sidecar_service, or give -proxy-id)"),
                many => bail!("-sidecar-for {service:?}: several proxies front it ({}); choose one with -proxy-id", many.join(", ")),
            }
        }
        (None, None) => {
            bail!("give -sidecar-for ID (the service the sidecar fronts) or -proxy-id ID")
        }
    };
    let Some(def) = client.get_json(&format!("agent/service/{id}"), &[]).await? else {
        bail!("no service with ID {id:?} is registered with this agent");
    };
    if def["Kind"] != "connect-proxy" {
        bail!("service {id:?} is not a connect proxy: give the sidecar's ID (-proxy-id) or the service it fronts (-sidecar-for)");
    }
    let destination = def["Proxy"]["DestinationServiceName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    Ok(Proxy {
        prometheus: prometheus_addr(&def)?,
        id,
        destination,
    })
}

/// `host:port` of the agent's xDS server: the flag, the environment, or
/// the port the agent reports on the host the CLI reaches it at.
pub(crate) async fn grpc_addr(
    flag: Option<&str>,
    client: &mesh_client::Client,
) -> anyhow::Result<(String, u16)> {
    let given = flag
        .map(str::to_string)
        .or_else(|| std::env::var("MESH_GRPC_ADDR").ok())
        .or_else(|| std::env::var("CONSUL_GRPC_ADDR").ok());
    if let Some(text) = given {
        let text = text
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .to_string();
        let (host, port) = text
            .rsplit_once(':')
            .with_context(|| format!("-grpc-addr {text:?}: expected HOST:PORT"))?;
        let port = port
            .parse()
            .with_context(|| format!("-grpc-addr {text:?}: bad port"))?;
        return Ok((host.trim_matches(['[', ']']).to_string(), port));
    }
    let me: Value = client
        .get_json("agent/self", &[])
        .await?
        .unwrap_or_default();
    let port = me["DebugConfig"]["GRPCPort"].as_i64().unwrap_or(-1);
    if port <= 0 {
        bail!("the agent serves no xDS (its gRPC port is disabled): start it with -grpc-port, or give -grpc-addr");
    }
    let host = client
        .base_url()
        .host_str()
        .unwrap_or("127.0.0.1")
        .trim_matches(['[', ']'])
        .to_string();
    Ok((host, port as u16))
}

/// Where Envoy reaches the agent's xDS server, and with what TLS: an
/// `https://` -grpc-addr (or $CONSUL_GRPC_ADDR) means TLS; asked of the
/// agent, its gRPC TLS port when it has one and a CA file is known, else
/// its plaintext gRPC port.
async fn envoy_grpc(
    args: &EnvoyArgs,
    client: &mesh_client::Client,
) -> anyhow::Result<(String, u16, Option<mesh_xds::bootstrap::GrpcTls>)> {
    let ca = args
        .grpc_ca_file
        .clone()
        .or_else(|| env_path("MESH_GRPC_CACERT"))
        .or_else(|| env_path("CONSUL_GRPC_CACERT"))
        .or_else(|| args.http.ca_file.clone())
        .or_else(mesh_client::env_ca_file);
    let given = args
        .grpc_addr
        .clone()
        .or_else(|| std::env::var("MESH_GRPC_ADDR").ok())
        .or_else(|| std::env::var("CONSUL_GRPC_ADDR").ok());
    let (host, port, tls) = match given {
        Some(text) => {
            let (host, port) = grpc_addr(Some(&text), client).await?;
            (host, port, text.starts_with("https://"))
        }
        None => {
            let me: Value = client
                .get_json("agent/self", &[])
                .await?
                .unwrap_or_default();
            let tls_port = me["DebugConfig"]["GRPCTLSPort"].as_i64().unwrap_or(-1);
            let plain_port = me["DebugConfig"]["GRPCPort"].as_i64().unwrap_or(-1);
            let host = client
                .base_url()
                .host_str()
                .unwrap_or("127.0.0.1")
                .trim_matches(['[', ']'])
                .to_string();
            match (tls_port > 0, plain_port > 0, ca.is_some()) {
                (true, _, true) => (host, tls_port as u16, true),
                (_, true, _) => (host, plain_port as u16, false),
                (true, false, false) => bail!(
                    "the agent serves xDS only over TLS (its gRPC TLS port): give -grpc-ca-file with the CA of its certificate"
                ),
                _ => bail!("the agent serves no xDS (its gRPC ports are disabled): start it with -grpc-port or -grpc-tls-port, or give -grpc-addr"),
            }
        }
    };
    if !tls {
        return Ok((host, port, None));
    }
    let Some(ca) = ca else {
        bail!("-grpc-addr https://…: give -grpc-ca-file (or -ca-file) with the CA of the agent's certificate");
    };
    // Envoy reads the files itself, from its own working directory.
    let absolute = |p: &std::path::Path| -> anyhow::Result<String> {
        let full = std::fs::canonicalize(p).with_context(|| format!("{}", p.display()))?;
        Ok(full.to_string_lossy().into_owned())
    };
    let client_cert = match (&args.http.client_cert, &args.http.client_key) {
        (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
        _ => mesh_client::env_client_cert(),
    };
    let client_cert = match client_cert {
        Some((cert, key)) => Some((absolute(&cert)?, absolute(&key)?)),
        None => None,
    };
    let grpc_tls = mesh_xds::bootstrap::GrpcTls {
        ca_file: absolute(&ca)?,
        client_cert,
    };
    Ok((host, port, Some(grpc_tls)))
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Runs `mesh connect envoy`.
pub async fn run(args: &EnvoyArgs) -> anyhow::Result<ExitCode> {
    let client = args.http.client()?;
    let proxy = find_proxy(args, &client).await?;
    let (grpc_host, grpc_port, grpc_tls) = envoy_grpc(args, &client).await?;
    let bootstrap = mesh_xds::bootstrap::Bootstrap {
        proxy_id: proxy.id.clone(),
        service: proxy.destination.clone(),
        grpc_host,
        grpc_port,
        token: args.http.token.clone().or_else(mesh_client::env_token),
        admin_host: args.admin_bind.ip().to_string(),
        admin_port: args.admin_bind.port(),
        prometheus: proxy.prometheus,
        delta: !args.sotw,
        grpc_tls,
    }
    .to_json();
    let text = serde_json::to_string_pretty(&bootstrap)?;
    if args.bootstrap {
        println!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    // The bootstrap carries the token: only this user may read it.
    let path = std::env::temp_dir().join(format!(
        "mesh-envoy-{}-{}.json",
        proxy.id,
        std::process::id()
    ));
    write_private(&path, &text)?;
    let mut envoy = std::process::Command::new(&args.envoy_binary);
    envoy
        .arg("--config-path")
        .arg(&path)
        .args(["--disable-hot-restart"]);
    // Live deny: a listener whose intentions changed is drained, and its
    // connections closed, within a second (see docs/xds.md).
    if !args
        .envoy_args
        .iter()
        .any(|a| a.starts_with("--drain-time-s"))
    {
        envoy.args(["--drain-time-s", "1"]);
    }
    if !args
        .envoy_args
        .iter()
        .any(|a| a.starts_with("--drain-strategy"))
    {
        envoy.args(["--drain-strategy", "immediate"]);
    }
    envoy.args(&args.envoy_args);
    exec(envoy, &args.envoy_binary)
}

fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing the Envoy bootstrap to {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// Replaces this process with Envoy, so signals and the exit code are Envoy's.
fn exec(mut envoy: std::process::Command, binary: &std::path::Path) -> anyhow::Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    let error = envoy.exec();
    bail!(
        "cannot run Envoy ({}): {error}; install it or give -envoy-binary",
        binary.display()
    )
}
