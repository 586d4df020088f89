//! `mesh agent`: flags → a config overlay on top of the files → `RuntimeConfig` → run.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{ArgMatches, Args};
use mesh_config::{Origin, RawConfig, RawPerformance, RawPorts, RuntimeConfig, Source};
use tokio::signal::unix::{signal, SignalKind};

/// Flags of `mesh agent`, named as Consul's.
#[derive(Debug, Clone, Default, Args)]
pub struct AgentArgs {
    /// Development mode: a single in-memory-ish server that leads itself
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub dev: Option<bool>,
    /// Run as a server (Raft voter)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub server: Option<bool>,
    /// Servers to wait for before bootstrapping the cluster
    #[arg(long, value_name = "N")]
    pub bootstrap_expect: Option<u32>,
    /// Bootstrap a single-server cluster (as -bootstrap-expect=1)
    #[arg(long)]
    pub bootstrap: bool,
    /// Node name [default: hostname]
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Datacenter [default: dc1]
    #[arg(long, value_name = "DC")]
    pub datacenter: Option<String>,
    /// Directory for state
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// Address for gossip and server RPC [default: 0.0.0.0]
    #[arg(long, value_name = "IP")]
    pub bind: Option<String>,
    /// Address other agents use to reach this one
    #[arg(long, value_name = "IP")]
    pub advertise: Option<String>,
    /// Address for HTTP, DNS and gRPC [default: 127.0.0.1]
    #[arg(long, value_name = "IP")]
    pub client: Option<String>,
    /// Agent to join at start, retried until it answers (repeatable)
    #[arg(long, value_name = "ADDR")]
    pub retry_join: Vec<String>,
    /// Time between join attempts, e.g. 30s
    #[arg(long, value_name = "DURATION")]
    pub retry_interval: Option<String>,
    /// Gossip encryption key (see `mesh keygen`)
    #[arg(long, value_name = "KEY")]
    pub encrypt: Option<String>,
    /// HTTP API port (-1 disables)
    #[arg(long, value_name = "PORT", allow_negative_numbers = true)]
    pub http_port: Option<i64>,
    /// HTTPS API port (-1 disables)
    #[arg(long, value_name = "PORT", allow_negative_numbers = true)]
    pub https_port: Option<i64>,
    /// DNS port (-1 disables)
    #[arg(long, value_name = "PORT", allow_negative_numbers = true)]
    pub dns_port: Option<i64>,
    /// gRPC (xDS) port (-1 disables)
    #[arg(long, value_name = "PORT", allow_negative_numbers = true)]
    pub grpc_port: Option<i64>,
    /// gRPC (xDS) over TLS port, with tls.grpc (-1 disables)
    #[arg(long, value_name = "PORT", allow_negative_numbers = true)]
    pub grpc_tls_port: Option<i64>,
    /// LAN gossip port
    #[arg(long, value_name = "PORT", allow_negative_numbers = true)]
    pub serf_lan_port: Option<i64>,
    /// Server RPC (Raft) port
    #[arg(long, value_name = "PORT", allow_negative_numbers = true)]
    pub server_port: Option<i64>,
    /// Config file, .hcl or .json (repeatable; later files win)
    #[arg(long, value_name = "FILE")]
    pub config_file: Vec<PathBuf>,
    /// Directory of .hcl/.json config files, read in lexical order (repeatable)
    #[arg(long, value_name = "DIR")]
    pub config_dir: Vec<PathBuf>,
    /// trace, debug, info, warn or error
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Raft timing multiplier, 1 (production) to 10
    #[arg(long, value_name = "N")]
    pub raft_multiplier: Option<u32>,
    /// Serve the web UI
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub ui: Option<bool>,
    /// Serve the UI's files from this directory instead of the built-in ones
    #[arg(long, value_name = "DIR")]
    pub ui_dir: Option<String>,
    /// The URL path the UI is served under (default /ui/)
    #[arg(long, value_name = "PATH")]
    pub ui_content_path: Option<String>,
}

impl AgentArgs {
    /// The flags as a config layer that wins over files, each key marked with its flag.
    pub fn overlay(&self) -> RawConfig {
        let port = |p: Option<i64>| p;
        let ports = RawPorts {
            http: port(self.http_port),
            https: port(self.https_port),
            grpc: port(self.grpc_port),
            grpc_tls: port(self.grpc_tls_port),
            dns: port(self.dns_port),
            serf_lan: port(self.serf_lan_port),
            server: port(self.server_port),
        };
        let mut raw = RawConfig {
            dev: self.dev.unwrap_or(false),
            datacenter: self.datacenter.clone(),
            node_name: self.node.clone(),
            server: self.server,
            bootstrap_expect: self.bootstrap_expect,
            bootstrap: self.bootstrap.then_some(true),
            bind_addr: self.bind.clone(),
            advertise_addr: self.advertise.clone(),
            client_addr: self.client.clone(),
            data_dir: self.data_dir.clone(),
            encrypt: self.encrypt.clone(),
            retry_join: (!self.retry_join.is_empty()).then(|| self.retry_join.clone()),
            retry_interval: self.retry_interval.clone(),
            log_level: self.log_level.clone(),
            ui: self.ui,
            ui_dir: self.ui_dir.clone(),
            ui_content_path: self.ui_content_path.clone(),
            ports: (ports != RawPorts::default()).then_some(ports),
            performance: self.raft_multiplier.map(|m| RawPerformance {
                raft_multiplier: Some(m),
            }),
            ..RawConfig::default()
        };
        raw.mark_origin(|key| Origin::Flag(flag_for_key(key)));
        raw
    }
}

/// The flag that sets a config key, as the user typed it.
pub fn flag_for_key(key: &str) -> String {
    let flag = match key {
        "node_name" => "node",
        "bind_addr" => "bind",
        "advertise_addr" => "advertise",
        "client_addr" => "client",
        "performance.raft_multiplier" => "raft-multiplier",
        other => match other.strip_prefix("ports.") {
            Some(port) => return format!("-{}-port", port.replace('_', "-")),
            None => other,
        },
    };
    format!("-{}", flag.replace('_', "-"))
}

/// `-config-file` and `-config-dir` in the order they were given on the command line.
pub fn sources(args: &AgentArgs, matches: Option<&ArgMatches>) -> Vec<Source> {
    let indices = |id: &str, n: usize| -> Vec<usize> {
        matches
            .and_then(|m| m.indices_of(id))
            .map(|i| i.collect())
            .unwrap_or_else(|| (0..n).collect())
    };
    let mut ordered: Vec<(usize, Source)> = Vec::new();
    let files = indices("config_file", args.config_file.len());
    for (i, path) in files.into_iter().zip(&args.config_file) {
        ordered.push((i, Source::File(path.clone())));
    }
    let dirs = indices("config_dir", args.config_dir.len());
    for (i, path) in dirs.into_iter().zip(&args.config_dir) {
        // Without indices, directories go after files.
        let i = if matches.is_some() {
            i
        } else {
            usize::MAX / 2 + i
        };
        ordered.push((i, Source::Dir(path.clone())));
    }
    ordered.sort_by_key(|(i, _)| *i);
    ordered.into_iter().map(|(_, s)| s).collect()
}

/// Files, then flags, merged and validated.
pub fn config(args: &AgentArgs, matches: Option<&ArgMatches>) -> anyhow::Result<RuntimeConfig> {
    let files = mesh_config::load(&sources(args, matches))?;
    let raw = files.merge(args.overlay());
    Ok(RuntimeConfig::build(raw)?)
}

/// Runs the agent until it stops.
pub async fn run(args: &AgentArgs, matches: Option<&ArgMatches>) -> anyhow::Result<()> {
    let config = config(args, matches).context("invalid configuration")?;
    // MESH_TELEMETRY=off leaves the recorder out: every metric call is a
    // no-op. For measuring what telemetry costs (bench/telemetry.sh).
    if std::env::var("MESH_TELEMETRY").as_deref() != Ok("off") {
        mesh_telemetry::install(&config.metrics_prefix);
    }
    let set_log_level = crate::logging::init(&crate::logging::LogSettings {
        level: &config.log_level,
        json: config.log_json,
        file: config.log_file.as_ref(),
    })
    .context("log_file")?;
    tracing::info!(
        node = %config.node_name,
        datacenter = %config.datacenter,
        server = config.server,
        dev = config.dev,
        files = ?config.config_files,
        "starting agent"
    );
    for note in &config.deprecations {
        tracing::warn!("{note}");
    }
    let source = mesh_agent::ConfigSource {
        sources: sources(args, matches),
        overlay: args.overlay(),
        set_log_level,
    };
    let built = mesh_agent::Config::new(config)
        .with_source(source)
        .build()
        .await?;
    // Signals are the binary's: SIGHUP reloads, SIGINT and SIGTERM stop.
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    };
    let running = built.spawn(stop);
    let reloads = running.reloader();
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            reloads.reload_soon("SIGHUP");
        }
    });
    running.wait().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cli;
    use clap::{CommandFactory, FromArgMatches};

    fn parse(args: &[&str]) -> (AgentArgs, ArgMatches) {
        let argv = crate::argv::normalise(
            ["mesh", "agent"]
                .iter()
                .chain(args)
                .map(std::ffi::OsString::from),
        );
        let matches = Cli::command().try_get_matches_from(argv).unwrap();
        let cli = Cli::from_arg_matches(&matches).unwrap();
        let crate::Command::Agent(agent) = cli.command else {
            panic!("not agent")
        };
        let sub = matches.subcommand_matches("agent").unwrap().clone();
        (*agent, sub)
    }

    #[test]
    fn flags_map_to_config_keys() {
        let (args, _) = parse(&[
            "-server",
            "-bootstrap-expect=3",
            "-node=n1",
            "-datacenter",
            "east",
            "-bind=10.0.0.1",
            "-client=0.0.0.0",
            "-retry-join=a",
            "-retry-join=b",
            "-http-port=-1",
            "-serf-lan-port=9301",
            "-raft-multiplier=5",
            "-ui=false",
            "-data-dir=/d",
        ]);
        let raw = args.overlay();
        assert_eq!(raw.server, Some(true));
        assert_eq!(raw.bootstrap_expect, Some(3));
        assert_eq!(raw.node_name.as_deref(), Some("n1"));
        assert_eq!(raw.datacenter.as_deref(), Some("east"));
        assert_eq!(raw.retry_join, Some(vec!["a".into(), "b".into()]));
        let ports = raw.ports.clone().unwrap();
        assert_eq!(
            (ports.http, ports.serf_lan, ports.dns),
            (Some(-1), Some(9301), None)
        );
        assert_eq!(raw.ui, Some(false));
        assert!(!raw.dev);
        assert_eq!(raw.origin("bind_addr"), Some(&Origin::Flag("-bind".into())));
        assert_eq!(
            raw.origin("ports.serf_lan"),
            Some(&Origin::Flag("-serf-lan-port".into()))
        );

        let c = RuntimeConfig::build(raw).unwrap();
        assert_eq!(c.ports.http, None);
        assert_eq!(c.raft_multiplier, 5);
        assert_eq!(c.advertise_addr.to_string(), "10.0.0.1");
    }

    #[test]
    fn dev_flag_builds_a_dev_server() {
        let (args, _) = parse(&["-dev"]);
        let c = RuntimeConfig::build(args.overlay()).unwrap();
        assert!(c.dev && c.server);
        assert_eq!(c.bootstrap_expect, 1);
    }

    #[test]
    fn flag_errors_name_the_flag() {
        let (args, _) = parse(&["-dev", "-bind=nope"]);
        let err = RuntimeConfig::build(args.overlay()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "flag -bind: bind_addr: \"nope\" is not an IP address"
        );
    }

    #[test]
    fn config_sources_keep_command_line_order() {
        let (args, matches) = parse(&[
            "-config-dir=d1",
            "-config-file=a.hcl",
            "-config-dir",
            "d2",
            "-config-file=b.json",
        ]);
        assert_eq!(
            sources(&args, Some(&matches)),
            [
                Source::Dir("d1".into()),
                Source::File("a.hcl".into()),
                Source::Dir("d2".into()),
                Source::File("b.json".into()),
            ]
        );
    }

    #[test]
    fn flags_win_over_files() {
        let dir = std::env::temp_dir().join(format!("mesh-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.hcl");
        std::fs::write(
            &file,
            "datacenter = \"west\"\nnode_name = \"from-file\"\ndata_dir = \"/x\"\n",
        )
        .unwrap();
        let file_arg = format!("-config-file={}", file.display());
        let (args, matches) = parse(&[&file_arg, "-node=from-flag"]);
        let c = config(&args, Some(&matches)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(c.node_name, "from-flag");
        assert_eq!(c.datacenter, "west");
        assert_eq!(c.config_files, [file]);
    }

    #[test]
    fn flag_names_for_keys() {
        assert_eq!(flag_for_key("ports.serf_lan"), "-serf-lan-port");
        assert_eq!(flag_for_key("bootstrap_expect"), "-bootstrap-expect");
        assert_eq!(flag_for_key("node_name"), "-node");
    }
}
