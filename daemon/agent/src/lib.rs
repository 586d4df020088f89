//! The mesh agent: binds its listeners, opens the Raft store, joins gossip,
//! and runs the leader duties (bootstrap, membership from gossip).
//! `Agent::build(config)` then `agent.run()`; `run(config)` does both.

#![forbid(unsafe_code)]

mod build;
mod dns;
mod duties;
mod endpoints;
mod handle;
mod identity;
mod local;
mod sync;

use std::sync::Arc;

pub use build::Agent;
use mesh_config::RuntimeConfig;

/// Build and run an agent until it is signalled, leaves, or fails.
pub async fn run(config: RuntimeConfig) -> anyhow::Result<()> {
    let agent = Agent::build(config).await?;
    Arc::new(agent).run().await
}
