//! `mesh members`: the gossip pool as this agent sees it.

use std::process::ExitCode;

use clap::Args;
use mesh_client::Member;

use crate::output::{print_json, print_table, Format, HttpArgs};

/// Flags of `mesh members`.
#[derive(Debug, Clone, Args)]
pub struct MembersArgs {
    /// Show every tag instead of the summary columns
    #[arg(long)]
    pub detailed: bool,
    /// Only members whose status matches this regular expression (alive, left, failed)
    #[arg(long, value_name = "REGEX")]
    pub status: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// Lists members, sorted by name.
pub async fn run(args: &MembersArgs) -> anyhow::Result<ExitCode> {
    let mut members = args.http.client()?.members().await?;
    members.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(pattern) = &args.status {
        // Anchored, as Consul matches the whole status.
        let re = regex::Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|e| anyhow::anyhow!("-status {pattern:?}: {e}"))?;
        members.retain(|m| re.is_match(m.status_name()));
    }
    if args.format == Format::Json {
        print_json(&members)?;
    } else if args.detailed {
        print_table(
            &["Node", "Address", "Status", "Tags"],
            &detailed_rows(&members),
        );
    } else {
        print_table(
            &["Node", "Address", "Status", "Type", "DC"],
            &rows(&members),
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn address(m: &Member) -> String {
    if m.addr.contains(':') {
        format!("[{}]:{}", m.addr, m.port)
    } else {
        format!("{}:{}", m.addr, m.port)
    }
}

fn rows(members: &[Member]) -> Vec<Vec<String>> {
    members
        .iter()
        .map(|m| {
            vec![
                m.name.clone(),
                address(m),
                m.status_name().to_string(),
                m.role().to_string(),
                m.datacenter().to_string(),
            ]
        })
        .collect()
}

fn detailed_rows(members: &[Member]) -> Vec<Vec<String>> {
    members
        .iter()
        .map(|m| {
            let tags: Vec<String> = m.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            vec![
                m.name.clone(),
                address(m),
                m.status_name().to_string(),
                tags.join(","),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_rows() {
        let m = Member {
            name: "n1".into(),
            addr: "10.0.0.1".into(),
            port: 8301,
            tags: [("role", "consul"), ("dc", "dc1")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            status: 4,
            state: None,
        };
        assert_eq!(
            rows(std::slice::from_ref(&m))[0],
            ["n1", "10.0.0.1:8301", "failed", "server", "dc1"]
        );
        assert_eq!(detailed_rows(&[m])[0][3], "dc=dc1,role=consul");
    }
}
