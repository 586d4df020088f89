//! `mesh keyring -list | -install KEY | -use KEY | -remove KEY`, like
//! `consul keyring`: gossip keys changed on every member of the pool.

use std::process::ExitCode;

use clap::Args;
use mesh_client::Method;
use serde_json::{json, Value};

use crate::output::HttpArgs;

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("op").required(true))]
pub struct KeyringArgs {
    /// List the keys installed on each member, with how many hold each
    #[arg(long, group = "op")]
    pub list: bool,
    /// Install a key on every member (it decrypts; it does not encrypt yet)
    #[arg(long, group = "op", value_name = "KEY")]
    pub install: Option<String>,
    /// Make an installed key the one every member encrypts with
    #[arg(long = "use", group = "op", value_name = "KEY")]
    pub use_key: Option<String>,
    /// Remove a key that is no longer primary from every member
    #[arg(long, group = "op", value_name = "KEY")]
    pub remove: Option<String>,
    #[command(flatten)]
    pub http: HttpArgs,
}

pub async fn run(args: &KeyringArgs) -> anyhow::Result<ExitCode> {
    let client = args.http.client()?;
    let change = |method, key: &String, what: &str| (method, key.clone(), what.to_string());
    let (method, key, what) = match (&args.install, &args.use_key, &args.remove) {
        (Some(k), _, _) => change(Method::POST, k, "Installing new gossip encryption key"),
        (_, Some(k), _) => change(Method::PUT, k, "Changing primary gossip encryption key"),
        (_, _, Some(k)) => change(Method::DELETE, k, "Removing gossip encryption key"),
        _ => {
            println!("==> Gathering installed encryption keys...");
            let pools = client
                .get_json("operator/keyring", &[])
                .await?
                .unwrap_or(Value::Null);
            print!("{}", listing(&pools));
            return Ok(ExitCode::SUCCESS);
        }
    };
    println!("==> {what}...");
    client
        .write_json(
            method,
            "operator/keyring",
            &[],
            Some(&json!({ "Key": key })),
        )
        .await?;
    Ok(ExitCode::SUCCESS)
}

/// Consul's listing: per pool, each key with holders/members.
fn listing(pools: &Value) -> String {
    let mut out = String::new();
    for pool in pools.as_array().into_iter().flatten() {
        let dc = pool["Datacenter"].as_str().unwrap_or_default();
        let nodes = pool["NumNodes"].as_u64().unwrap_or(0);
        out.push_str(&format!("\n{dc} (LAN):\n"));
        for (key, count) in pool["Keys"].as_object().into_iter().flatten() {
            let primary = pool["PrimaryKeys"].get(key).is_some();
            let mark = if primary { " (primary)" } else { "" };
            out.push_str(&format!(
                "  {key} [{}/{nodes}]{mark}\n",
                count.as_u64().unwrap_or(0)
            ));
        }
        for (node, message) in pool["Messages"].as_object().into_iter().flatten() {
            out.push_str(&format!(
                "  error from {node}: {}\n",
                message.as_str().unwrap_or_default()
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listing_counts_holders_per_key() {
        let pools = json!([{
            "Datacenter": "dc1", "NumNodes": 4,
            "Keys": {"AAA=": 4, "BBB=": 3}, "PrimaryKeys": {"AAA=": 4},
            "Messages": {"c1": "unreachable"}
        }]);
        assert_eq!(
            listing(&pools),
            "\ndc1 (LAN):\n  AAA= [4/4] (primary)\n  BBB= [3/4]\n  error from c1: unreachable\n"
        );
    }
}
