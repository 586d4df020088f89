//! `mesh rtt`: the round trip between two nodes, estimated from their
//! network coordinates (`consul rtt`).

use std::process::ExitCode;

use anyhow::{anyhow, Context};
use mesh_types::Coordinate;
use serde_json::Value;

use crate::output::HttpArgs;

/// Flags of `mesh rtt`.
#[derive(Debug, clap::Args)]
pub struct RttArgs {
    /// Between servers, named `<node>.<datacenter>`, from the
    /// datacenters' coordinates
    #[arg(long)]
    pub wan: bool,
    /// The first node
    pub node1: String,
    /// The second node (default: this agent's node)
    pub node2: Option<String>,
    #[command(flatten)]
    pub http: HttpArgs,
}

fn coordinate_of(list: &[Value], name: &str) -> Option<Coordinate> {
    let entry = list
        .iter()
        .find(|e| e.get("Node").and_then(Value::as_str) == Some(name))?;
    serde_json::from_value(entry.get("Coord")?.clone()).ok()
}

/// `mesh rtt [-wan] NODE1 [NODE2]`.
pub async fn run(args: &RttArgs) -> anyhow::Result<ExitCode> {
    let client = args.http.client()?;
    let node2 = match &args.node2 {
        Some(n) => n.clone(),
        None => {
            let me = client
                .get_json("agent/self", &[])
                .await?
                .ok_or_else(|| anyhow!("the agent did not describe itself"))?;
            let name = me["Config"]["NodeName"].as_str().unwrap_or_default();
            let dc = me["Config"]["Datacenter"].as_str().unwrap_or_default();
            if args.wan {
                format!("{name}.{dc}")
            } else {
                name.to_string()
            }
        }
    };
    let list: Vec<Value> = if args.wan {
        let dcs = client
            .get_json("coordinate/datacenters", &[])
            .await
            .context("Error getting coordinates")?
            .unwrap_or_default();
        dcs.as_array()
            .into_iter()
            .flatten()
            .filter_map(|dc| dc.get("Coordinates")?.as_array().cloned())
            .flatten()
            .collect()
    } else {
        client
            .get_json("coordinate/nodes", &[])
            .await
            .context("Error getting coordinates")?
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    };
    let find = |name: &str| {
        coordinate_of(&list, name)
            .ok_or_else(|| anyhow!("Could not find a coordinate for node {name:?}"))
    };
    let (a, b) = (find(&args.node1)?, find(&node2)?);
    for c in [&a, &b] {
        c.validate()
            .map_err(|e| anyhow!("Bad coordinate from the agent: {e}"))?;
    }
    println!(
        "Estimated {} <-> {} rtt: {:.3} ms (using {} coordinates)",
        args.node1,
        node2,
        a.distance(&b) * 1e3,
        if args.wan { "WAN" } else { "LAN" }
    );
    Ok(ExitCode::SUCCESS)
}
