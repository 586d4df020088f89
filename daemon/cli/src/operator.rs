//! `mesh operator raft list-peers`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use mesh_client::RaftConfiguration;

use crate::output::{print_json, print_table, Format, HttpArgs};

/// `mesh operator ...`
#[derive(Debug, Clone, Args)]
pub struct OperatorArgs {
    #[command(subcommand)]
    pub command: OperatorCommand,
}

/// Operator command groups.
#[derive(Debug, Clone, Subcommand)]
pub enum OperatorCommand {
    /// Inspect the Raft cluster
    Raft {
        #[command(subcommand)]
        command: RaftCommand,
    },
}

/// `mesh operator raft ...`
#[derive(Debug, Clone, Subcommand)]
pub enum RaftCommand {
    /// List the Raft servers and which one leads
    ListPeers {
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        http: HttpArgs,
    },
}

/// Runs an operator command.
pub async fn run(args: &OperatorArgs) -> anyhow::Result<ExitCode> {
    let OperatorCommand::Raft {
        command: RaftCommand::ListPeers { format, http },
    } = &args.command;
    let config = http.client()?.raft_configuration().await?;
    match format {
        Format::Json => print_json(&config)?,
        Format::Table => print_table(&["Node", "ID", "Address", "State", "Voter"], &rows(&config)),
    }
    Ok(ExitCode::SUCCESS)
}

fn rows(config: &RaftConfiguration) -> Vec<Vec<String>> {
    config
        .servers
        .iter()
        .map(|s| {
            let state = if s.leader { "leader" } else { "follower" };
            vec![
                s.node.clone(),
                s.id.clone(),
                s.address.clone(),
                state.to_string(),
                s.voter.to_string(),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_client::RaftServer;

    #[test]
    fn leader_and_follower_rows() {
        let config = RaftConfiguration {
            servers: vec![
                RaftServer {
                    id: "a".into(),
                    node: "n1".into(),
                    address: "10.0.0.1:8300".into(),
                    leader: true,
                    voter: true,
                },
                RaftServer {
                    id: "b".into(),
                    node: "n2".into(),
                    address: "10.0.0.2:8300".into(),
                    leader: false,
                    voter: false,
                },
            ],
            index: 1,
        };
        let rows = rows(&config);
        assert_eq!(rows[0], ["n1", "a", "10.0.0.1:8300", "leader", "true"]);
        assert_eq!(rows[1][3..], ["follower", "false"]);
    }
}
