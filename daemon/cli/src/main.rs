//! `mesh`: the agent and the command-line client, with Consul's flags and habits.
#![forbid(unsafe_code)]

mod acl;
mod acl_auth;
mod agent;
mod argv;
mod catalog;
mod config_cmd;
mod connect;
mod connect_envoy;
mod intention;
mod keyring;
mod kv;
mod lock;
mod logging;
mod members;
mod misc;
mod operator;
mod output;
mod rtt;
mod sync_cmd;
mod tls;
mod validate;
mod watch_cmd;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// A Consul-compatible service mesh.
#[derive(Debug, Parser)]
#[command(name = "mesh", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an agent (server with -server or -dev, client otherwise)
    Agent(Box<agent::AgentArgs>),
    /// List the members of the LAN gossip pool
    Members(members::MembersArgs),
    /// Cluster operations
    Operator(operator::OperatorArgs),
    /// Read and write the key/value store
    Kv(kv::KvArgs),
    /// Run a command while holding a lock (or a semaphore slot) in the KV store
    Lock(Box<lock::LockArgs>),
    /// Query the service catalog
    Catalog(catalog::CatalogArgs),
    /// Register and deregister services with the local agent
    Services(catalog::ServicesArgs),
    /// Save or restore the cluster state
    Snapshot(catalog::SnapshotArgs),
    /// Manage intentions (which services may connect to which)
    Intention(intention::IntentionArgs),
    /// Manage ACL tokens and policies
    Acl(acl::AclArgs),
    /// Connect: the built-in proxy and the CA
    Connect(connect::ConnectArgs),
    /// Plan configuration changes (`mesh config plan DIR`)
    Config(config_cmd::ConfigArgs),
    /// Make the agent re-read its configuration files
    Reload(output::HttpArgs),
    /// Ask the agent to leave the cluster and shut down
    Leave(output::HttpArgs),
    /// Generate a gossip encryption key
    Keygen,
    /// Install, use, remove and list gossip encryption keys on every member
    Keyring(keyring::KeyringArgs),
    /// Create the agents' TLS CA and certificates
    Tls(tls::TlsArgs),
    /// Check agent config files without starting an agent
    Validate(validate::ValidateArgs),
    /// Run Terraform modules when the catalog changes (consul-terraform-sync)
    Sync(Box<sync_cmd::SyncArgs>),
    /// Stream the agent's log lines
    Monitor(misc::MonitorArgs),
    /// Tell the agent to join the cluster through other agents' gossip addresses
    Join(misc::JoinArgs),
    /// Mark a failed node as left, so the cluster stops waiting for it
    ForceLeave(misc::ForceLeaveArgs),
    /// Put the node or a service in maintenance mode (out of healthy answers)
    Maint(misc::MaintArgs),
    /// Fire a user event to every agent (or those its filters pick)
    Event(watch_cmd::EventArgs),
    /// Watch a key, prefix, services, nodes, a service, checks or events;
    /// run a handler on each change
    Watch(watch_cmd::WatchArgs),
    /// The agent's configuration and runtime figures, by section
    Info(output::HttpArgs),
    /// Estimate the round trip between two nodes from their network coordinates
    Rtt(rtt::RttArgs),
    /// Trade a JWT for an ACL token through an auth method
    Login(acl_auth::LoginArgs),
    /// Delete the login token in use
    Logout(output::HttpArgs),
    /// Print the version
    Version,
}

/// A bad flag or argument exits 1, as any other error does: 2 means an
/// answer to scripts (`intention check` denied, `config plan` changes).
/// Help and version are not errors.
fn usage_error(e: &clap::Error) -> ExitCode {
    // Shown with single-dash long flags, as Consul users type them.
    let text = argv::single_dash_help(&e.render().to_string());
    if e.use_stderr() {
        eprint!("{text}");
        ExitCode::FAILURE
    } else {
        print!("{text}");
        ExitCode::SUCCESS
    }
}

fn main() -> ExitCode {
    let argv = argv::normalise(std::env::args_os());
    let matches = match Cli::command().try_get_matches_from(argv) {
        Ok(matches) => matches,
        Err(e) => return usage_error(&e),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let runtime = match &cli.command {
        Command::Connect(connect::ConnectArgs {
            command: connect::ConnectCommand::Proxy(p),
        }) => mesh_proxy::runtime(p.workers),
        _ => tokio::runtime::Runtime::new(),
    }
    .expect("tokio runtime");
    match runtime.block_on(run(cli, &matches)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("Error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, matches: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Agent(args) => {
            agent::run(&args, matches.subcommand_matches("agent")).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Members(args) => members::run(&args).await,
        Command::Operator(args) => operator::run(&args).await,
        Command::Kv(args) => kv::run(&args).await,
        Command::Lock(args) => lock::run(&args).await,
        Command::Catalog(args) => catalog::run(&args).await,
        Command::Services(args) => catalog::run_services(&args).await,
        Command::Snapshot(args) => catalog::run_snapshot(&args).await,
        Command::Intention(args) => intention::run(&args).await,
        Command::Acl(args) => acl::run(&args).await,
        Command::Connect(args) => connect::run(&args).await,
        Command::Config(args) => config_cmd::run(&args).await,
        Command::Reload(http) => catalog::reload(&http).await,
        Command::Leave(http) => misc::leave(&http).await,
        Command::Keygen => misc::keygen(),
        Command::Keyring(args) => keyring::run(&args).await,
        Command::Tls(args) => tls::run(&args),
        Command::Validate(args) => Ok(validate::run(&args)),
        Command::Sync(args) => sync_cmd::run(&args).await,
        Command::Monitor(args) => misc::monitor(&args).await,
        Command::Join(args) => misc::join(&args).await,
        Command::Info(http) => misc::info(&http).await,
        Command::ForceLeave(args) => misc::force_leave(&args).await,
        Command::Maint(args) => misc::maint(&args).await,
        Command::Event(args) => watch_cmd::event(&args).await,
        Command::Watch(args) => watch_cmd::watch(&args).await,
        Command::Rtt(args) => rtt::run(&args).await,
        Command::Login(args) => acl_auth::login(&args).await,
        Command::Logout(http) => acl_auth::logout(&http).await,
        Command::Version => misc::version(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
