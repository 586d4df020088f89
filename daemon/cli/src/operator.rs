//! `mesh operator raft list-peers | remove-peer | transfer-leader` and
//! `mesh operator autopilot health`.

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
    /// Server health as the leader's autopilot sees it
    Autopilot {
        #[command(subcommand)]
        command: AutopilotCommand,
    },
}

/// `mesh operator autopilot ...`
#[derive(Debug, Clone, Subcommand)]
pub enum AutopilotCommand {
    /// Each server's health and the failure tolerance, as JSON
    Health {
        #[command(flatten)]
        http: HttpArgs,
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
    /// Remove a server from the Raft configuration (by -id or -address)
    RemovePeer {
        /// The server's Raft ID (as list-peers shows it)
        #[arg(long, conflicts_with = "address", required_unless_present = "address")]
        id: Option<String>,
        /// The server's RPC address (as list-peers shows it)
        #[arg(long)]
        address: Option<String>,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Hand Raft leadership to another server (-id, or the most caught-up)
    TransferLeader {
        /// The new leader's Raft ID (as list-peers shows it)
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        http: HttpArgs,
    },
}

/// Runs an operator command.
pub async fn run(args: &OperatorArgs) -> anyhow::Result<ExitCode> {
    let (format, http) = match &args.command {
        OperatorCommand::Raft {
            command: RaftCommand::ListPeers { format, http },
        } => (format, http),
        OperatorCommand::Raft {
            command: RaftCommand::RemovePeer { id, address, http },
        } => {
            let (key, value) = match (id, address) {
                (Some(id), _) => ("id", id.as_str()),
                (_, Some(address)) => ("address", address.as_str()),
                _ => anyhow::bail!("give -id or -address"),
            };
            http.client()?
                .write_json(
                    mesh_client::Method::DELETE,
                    "operator/raft/peer",
                    &[(key, value)],
                    None,
                )
                .await?;
            println!("Removed peer with {key} {value:?}");
            return Ok(ExitCode::SUCCESS);
        }
        OperatorCommand::Raft {
            command: RaftCommand::TransferLeader { id, http },
        } => {
            let query: Vec<(&str, &str)> = id.iter().map(|id| ("id", id.as_str())).collect();
            let answer = http
                .client()?
                .write_json(
                    mesh_client::Method::POST,
                    "operator/raft/transfer-leader",
                    &query,
                    None,
                )
                .await?;
            let to = answer["ID"].as_str().unwrap_or("another server");
            println!("Success: leadership transferred to server {to}");
            return Ok(ExitCode::SUCCESS);
        }
        OperatorCommand::Autopilot {
            command: AutopilotCommand::Health { http },
        } => {
            // 429 means unhealthy, with the same body: print it either way.
            let (status, body) = http
                .client()?
                .get_json_with_status("operator/autopilot/health")
                .await?;
            print_json(&body)?;
            return Ok(if status == 200 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            });
        }
    };
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
