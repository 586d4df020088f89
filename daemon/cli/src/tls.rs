//! `mesh tls ca create` and `mesh tls cert create`, with `consul tls`'s
//! flags and file names, written to the current directory.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use mesh_tls::generate::{ca_files, create_ca, create_cert, CertKind, CertRequest};

#[derive(Debug, Args)]
pub struct TlsArgs {
    #[command(subcommand)]
    pub command: TlsCommand,
}

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Create or inspect the agents' CA
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Create agent certificates signed by the CA
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a CA: <domain>-agent-ca.pem and <domain>-agent-ca-key.pem
    Create(CaCreateArgs),
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Create a server, client or CLI certificate
    Create(Box<CertCreateArgs>),
}

#[derive(Debug, Args)]
pub struct CaCreateArgs {
    /// Days the CA is valid
    #[arg(long, default_value_t = 1825)]
    pub days: u32,
    /// The DNS domain the agents use
    #[arg(long, default_value = "consul")]
    pub domain: String,
}

#[derive(Debug, Args)]
pub struct CertCreateArgs {
    /// A server certificate (server.<dc>.<domain>)
    #[arg(long, conflicts_with_all = ["client", "cli"])]
    pub server: bool,
    /// A client agent certificate (client.<dc>.<domain>)
    #[arg(long, conflicts_with = "cli")]
    pub client: bool,
    /// A certificate for the CLI and API clients (cli.<dc>.<domain>)
    #[arg(long)]
    pub cli: bool,
    /// The datacenter
    #[arg(long, default_value = "dc1")]
    pub dc: String,
    /// The DNS domain the agents use
    #[arg(long, default_value = "consul")]
    pub domain: String,
    /// The CA certificate (default <domain>-agent-ca.pem)
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// The CA key (default <domain>-agent-ca-key.pem)
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Days the certificate is valid
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Another DNS name to include (repeatable)
    #[arg(long = "additional-dnsname")]
    pub additional_dnsname: Vec<String>,
    /// Another IP address to include (repeatable)
    #[arg(long = "additional-ipaddress")]
    pub additional_ipaddress: Vec<IpAddr>,
    /// Also <node>.server.<dc>.<domain> (servers only)
    #[arg(long)]
    pub node: Option<String>,
}

pub fn run(args: &TlsArgs) -> anyhow::Result<ExitCode> {
    let here = Path::new(".");
    match &args.command {
        TlsCommand::Ca {
            command: CaCommand::Create(a),
        } => {
            let written = create_ca(here, &a.domain, a.days).map_err(anyhow::Error::msg)?;
            saved(&written.cert);
            saved(&written.key);
        }
        TlsCommand::Cert {
            command: CertCommand::Create(a),
        } => {
            let kind = match (a.server, a.client, a.cli) {
                (true, _, _) => CertKind::Server,
                (_, true, _) => CertKind::Client,
                (_, _, true) => CertKind::Cli,
                _ => anyhow::bail!("say which certificate: -server, -client or -cli"),
            };
            if a.node.is_some() && kind != CertKind::Server {
                anyhow::bail!("-node is for -server certificates only");
            }
            let defaults = ca_files(here, &a.domain);
            let ca = a.ca.clone().unwrap_or(defaults.cert);
            let key = a.key.clone().unwrap_or(defaults.key);
            let request = CertRequest {
                kind,
                datacenter: a.dc.clone(),
                domain: a.domain.clone(),
                days: a.days,
                additional_dns: a.additional_dnsname.clone(),
                additional_ips: a.additional_ipaddress.clone(),
                node: a.node.clone(),
            };
            let written = create_cert(here, &ca, &key, &request).map_err(anyhow::Error::msg)?;
            saved(&written.cert);
            saved(&written.key);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn saved(path: &Path) {
    let name = path.file_name().map(Path::new).unwrap_or(path);
    println!("==> Saved {}", name.display());
}
