//! Small commands: `keygen`, `leave`, `version`.

use std::process::ExitCode;

use base64::Engine as _;

use crate::output::HttpArgs;

/// Prints a new 32-byte gossip key, base64-encoded, for `encrypt` / `-encrypt`.
pub fn keygen() -> anyhow::Result<ExitCode> {
    println!("{}", new_key());
    Ok(ExitCode::SUCCESS)
}

fn new_key() -> String {
    let key: [u8; 32] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// Asks the agent to leave gracefully.
pub async fn leave(http: &HttpArgs) -> anyhow::Result<ExitCode> {
    http.client()?.leave().await?;
    println!("Graceful leave complete");
    Ok(ExitCode::SUCCESS)
}

/// Flags of `mesh join`.
#[derive(Debug, clap::Args)]
pub struct JoinArgs {
    /// Gossip addresses (host:port) of agents to join
    #[arg(required = true, value_name = "ADDRESS")]
    pub addresses: Vec<String>,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// `mesh join ADDR…`: asks the agent to join each address; fails if none worked.
pub async fn join(args: &JoinArgs) -> anyhow::Result<ExitCode> {
    let client = args.http.client()?;
    let mut joined = 0;
    for addr in &args.addresses {
        match client
            .write_json(
                mesh_client::Method::PUT,
                &format!("agent/join/{addr}"),
                &[],
                None,
            )
            .await
        {
            Ok(_) => joined += 1,
            Err(e) => eprintln!("Error joining {addr}: {e}"),
        }
    }
    if joined == 0 {
        anyhow::bail!("joined none of the {} address(es)", args.addresses.len());
    }
    println!("Successfully joined cluster by contacting {joined} nodes.");
    Ok(ExitCode::SUCCESS)
}

/// `mesh info`: the agent's own view, section by section, as `consul info` prints it.
pub async fn info(http: &HttpArgs) -> anyhow::Result<ExitCode> {
    let me = http
        .client()?
        .get_json("agent/self", &[])
        .await?
        .ok_or_else(|| anyhow::anyhow!("the agent has no /v1/agent/self"))?;
    let mut sections: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let scalar = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for (section, value) in [
        ("agent", &me["Config"]),
        ("stats", &me["Stats"]),
        ("member", &me["Member"]),
    ] {
        if let serde_json::Value::Object(map) = value {
            let mut rows: Vec<(String, String)> = Vec::new();
            for (k, v) in map {
                match v {
                    serde_json::Value::Object(inner) => {
                        sections.push((
                            format!("{section}.{k}"),
                            inner
                                .iter()
                                .map(|(ik, iv)| (ik.clone(), scalar(iv)))
                                .collect(),
                        ));
                    }
                    serde_json::Value::Array(_) => rows.push((k.clone(), v.to_string())),
                    _ => rows.push((k.clone(), scalar(v))),
                }
            }
            sections.insert(0, (section.to_string(), rows));
        }
    }
    sections.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, rows) in sections {
        println!("{name}:");
        for (k, v) in rows {
            println!("\t{k} = {v}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Flags of `mesh monitor`.
#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    /// The most verbose level to show: trace, debug, info, warn, error
    #[arg(long = "log-level", default_value = "info", value_name = "LEVEL")]
    pub log_level: String,
    /// JSON lines
    #[arg(long = "log-json")]
    pub log_json: bool,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// `mesh monitor`: streams the agent's log lines until interrupted.
pub async fn monitor(args: &MonitorArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let client = args.http.client()?;
    let mut query = vec![("loglevel", args.log_level.as_str())];
    if args.log_json {
        query.push(("logjson", ""));
    }
    let mut resp = client.get_stream("agent/monitor", &query).await?;
    let mut out = std::io::stdout();
    loop {
        tokio::select! {
            chunk = resp.chunk() => match chunk? {
                Some(bytes) => {
                    out.write_all(&bytes)?;
                    out.flush()?;
                }
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the version.
pub fn version() -> anyhow::Result<ExitCode> {
    println!("mesh v{}", env!("CARGO_PKG_VERSION"));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_32_random_bytes() {
        let a = new_key();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&a)
            .unwrap();
        assert_eq!(decoded.len(), 32);
        assert_ne!(a, new_key());
        // A generated key is accepted by the agent config.
        let raw = mesh_config::RawConfig {
            encrypt: Some(a),
            ..mesh_config::RawConfig::dev()
        };
        mesh_config::RuntimeConfig::build(raw).unwrap();
    }
}

/// Flags of `mesh force-leave`.
#[derive(Debug, clap::Args)]
pub struct ForceLeaveArgs {
    /// Also drop the node from the member list at once
    #[arg(long)]
    pub prune: bool,
    /// The failed node's name
    pub node: String,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// `mesh force-leave [-prune] NODE`: a failed node becomes left everywhere.
pub async fn force_leave(args: &ForceLeaveArgs) -> anyhow::Result<ExitCode> {
    let query: Vec<(&str, &str)> = if args.prune {
        vec![("prune", "")]
    } else {
        Vec::new()
    };
    args.http
        .client()?
        .write_json(
            mesh_client::Method::PUT,
            &format!("agent/force-leave/{}", args.node),
            &query,
            None,
        )
        .await
        .map_err(|e| anyhow::anyhow!("Error force leaving: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

/// Flags of `mesh maint`.
#[derive(Debug, clap::Args)]
pub struct MaintArgs {
    /// Turn maintenance mode on
    #[arg(long, conflicts_with = "disable")]
    pub enable: bool,
    /// Turn maintenance mode off
    #[arg(long)]
    pub disable: bool,
    /// Why (shown in health answers); only with -enable
    #[arg(long, default_value = "", requires = "enable")]
    pub reason: String,
    /// A service ID on this agent, instead of the whole node
    #[arg(long, default_value = "")]
    pub service: String,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// `mesh maint [-enable [-reason R] | -disable] [-service ID]`; with
/// neither flag, lists what is in maintenance on this agent.
pub async fn maint(args: &MaintArgs) -> anyhow::Result<ExitCode> {
    let client = args.http.client()?;
    if !args.enable && !args.disable {
        let checks = client
            .get_json("agent/checks", &[])
            .await?
            .unwrap_or_default();
        let node = client
            .get_json("agent/self", &[])
            .await?
            .map(|me| {
                me["Config"]["NodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .unwrap_or_default();
        for check in checks.as_object().into_iter().flat_map(|m| m.values()) {
            let id = check["CheckID"].as_str().unwrap_or_default();
            let reason = check["Notes"].as_str().unwrap_or_default();
            if id == "_node_maintenance" {
                println!("Node:\n  Name:   {node}\n  Reason: {reason}");
            } else if let Some(service) = id.strip_prefix("_service_maintenance:") {
                println!("Service:\n  ID:     {service}\n  Reason: {reason}");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let enable = if args.enable { "true" } else { "false" };
    let query = [("enable", enable), ("reason", args.reason.as_str())];
    let path = if args.service.is_empty() {
        "agent/maintenance".to_string()
    } else {
        format!("agent/service/maintenance/{}", args.service)
    };
    client
        .write_json(mesh_client::Method::PUT, &path, &query, None)
        .await?;
    let what = if args.service.is_empty() {
        "Node".to_string()
    } else {
        format!("Service {:?}", args.service)
    };
    let state = if args.enable { "enabled" } else { "disabled" };
    println!("{what} maintenance is now {state}");
    Ok(ExitCode::SUCCESS)
}
