//! The mesh agent: binds its listeners, opens the Raft store, joins gossip,
//! and runs the leader duties (bootstrap, membership from gossip).
//! `Agent::build(config)`, then `Arc::new(agent).run(shutdown)`.
//! Signals belong to the binary: it resolves `shutdown` on SIGINT or
//! SIGTERM and calls `Agent::reload_soon` on SIGHUP.

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
mod stop;
mod storage;
mod sync;
mod tags;
mod writes;

pub use build::Agent;
pub use reconcile::{check_declarations, Change};
pub use reload::{ConfigSource, ConfigStatus};
