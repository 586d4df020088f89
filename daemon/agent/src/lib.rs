//! The mesh agent: binds its listeners, opens the Raft store, joins gossip,
//! and runs the leader duties (bootstrap, membership from gossip).
//! `Agent::build(config)` then `agent.run()`; `run(config)` does both.

#![forbid(unsafe_code)]

mod build;
mod ca_endpoints;
mod conn_limit;
mod connect_ca;
mod dns;
mod duties;
mod endpoints;
mod handle;
mod http_server;
mod https;
mod identity;
mod local;
mod managed;
mod proxy_snapshot;
mod reconcile;
#[cfg(test)]
mod reconcile_fuzz;
mod reload;
mod snapshot_hub;
mod storage;
mod sync;

use std::sync::Arc;

pub use build::Agent;
use mesh_config::RuntimeConfig;
pub use reconcile::{check_declarations, Change};
pub use reload::{ConfigSource, ConfigStatus};

/// Build and run an agent until it is signalled, leaves, or fails.
pub async fn run(config: RuntimeConfig, source: Option<ConfigSource>) -> anyhow::Result<()> {
    let mut agent = Agent::build(config).await?;
    if let Some(source) = source {
        agent = agent.with_config_source(source);
    }
    Arc::new(agent).run().await
}
