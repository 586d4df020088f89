//! `mesh event` (fire a user event) and `mesh watch` (consul watch).

use std::collections::BTreeMap;
use std::process::ExitCode;

use mesh_watch::{Handler, Watch, WatchKind};

use crate::output::HttpArgs;

/// Flags of `mesh event`.
#[derive(Debug, clap::Args)]
pub struct EventArgs {
    /// The event's name
    #[arg(long)]
    pub name: String,
    /// Only nodes whose name matches this regular expression handle it
    #[arg(long, value_name = "REGEXP", default_value = "")]
    pub node: String,
    /// Only nodes with a service whose name matches handle it
    #[arg(long, value_name = "REGEXP", default_value = "")]
    pub service: String,
    /// With -service: only instances with a matching tag
    #[arg(long, value_name = "REGEXP", default_value = "")]
    pub tag: String,
    /// The payload (at most a few hundred bytes with the name)
    pub payload: Option<String>,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// `mesh event -name NAME [-node RE] [-service RE [-tag RE]] [PAYLOAD]`.
pub async fn event(args: &EventArgs) -> anyhow::Result<ExitCode> {
    let query: Vec<(&str, &str)> = [
        ("node", &args.node),
        ("service", &args.service),
        ("tag", &args.tag),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| (k, v.as_str()))
    .collect();
    let payload = args.payload.clone().unwrap_or_default().into_bytes();
    let fired = args
        .http
        .client()?
        .write_bytes(
            mesh_client::Method::PUT,
            &format!("event/fire/{}", args.name),
            &query,
            payload,
        )
        .await
        .map_err(|e| anyhow::anyhow!("Error firing event: {e}"))?;
    println!(
        "Event ID: {}",
        fired.get("ID").and_then(|v| v.as_str()).unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// Flags of `mesh watch`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// What to watch: key, keyprefix, services, nodes, service, checks, event
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: String,
    /// The key (type key)
    #[arg(long)]
    pub key: Option<String>,
    /// The key prefix (type keyprefix)
    #[arg(long)]
    pub prefix: Option<String>,
    /// The service (types service and checks)
    #[arg(long)]
    pub service: Option<String>,
    /// Only instances with this tag (type service; repeatable)
    #[arg(long)]
    pub tag: Vec<String>,
    /// Only passing instances (type service)
    #[arg(long = "passingonly", value_name = "BOOL")]
    pub passing_only: Option<String>,
    /// Only checks in this state: any, passing, warning, critical (type checks)
    #[arg(long)]
    pub state: Option<String>,
    /// The event name (type event)
    #[arg(long)]
    pub name: Option<String>,
    /// Run the handler with sh -c (true) or as a program and arguments (false)
    #[arg(long, value_name = "BOOL", default_value = "true")]
    pub shell: String,
    /// The handler: it gets the view as JSON on stdin on each change.
    /// Without one, the view is printed once.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub handler: Vec<String>,
    #[command(flatten)]
    pub http: HttpArgs,
}

impl WatchArgs {
    fn params(&self) -> BTreeMap<String, Vec<String>> {
        let mut params = BTreeMap::new();
        let mut put = |k: &str, v: Vec<String>| {
            if !v.is_empty() {
                params.insert(k.to_string(), v);
            }
        };
        put("key", self.key.iter().cloned().collect());
        put("prefix", self.prefix.iter().cloned().collect());
        put("service", self.service.iter().cloned().collect());
        put("tag", self.tag.clone());
        put("passingonly", self.passing_only.iter().cloned().collect());
        put("state", self.state.iter().cloned().collect());
        put("name", self.name.iter().cloned().collect());
        params
    }
}

/// `mesh watch -type TYPE [parameters] [HANDLER…]`.
pub async fn watch(args: &WatchArgs) -> anyhow::Result<ExitCode> {
    let kind = WatchKind::parse(&args.kind, &args.params())?;
    let mut watch = Watch::new(args.http.client()?, kind);
    if args.handler.is_empty() {
        let (_, view) = watch.next().await;
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(ExitCode::SUCCESS);
    }
    let handler = match args.shell.as_str() {
        "true" => Handler::Shell(args.handler.join(" ")),
        "false" => Handler::Args(args.handler.clone()),
        other => anyhow::bail!("-shell must be true or false, not {other:?}"),
    };
    mesh_watch::run(watch, handler).await;
    Ok(ExitCode::SUCCESS)
}
