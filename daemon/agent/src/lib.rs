//! The mesh agent: binds its listeners, opens the Raft store, joins gossip,
//! and runs the leader duties (bootstrap, membership from gossip).
//! `Config::new(runtime).build()` binds and opens everything, then
//! `Built::spawn(shutdown)` starts each component's tasks and returns a
//! `Drain` to wait on. Signals belong to the binary: it resolves `shutdown`
//! on SIGINT or SIGTERM and calls `Reloader::reload_soon` on SIGHUP.

#![forbid(unsafe_code)]

mod acl_expiry;
mod auto_encrypt;
mod autopilot;
mod build;
mod ca_endpoints;
mod conn_limit;
mod connect_ca;
mod coordinates;
mod dns;
mod duties;
mod endpoints;
mod events;
mod handle;
mod http_server;
mod identity;
mod keyring;
mod local;
mod local_health;
mod managed;
mod node;
mod operator;
mod proxy_snapshot;
mod reconcile;
#[cfg(test)]
mod reconcile_fuzz;
mod reload;
mod rpc_listener;
mod session_ttl;
mod snapshot_compute;
mod snapshot_hub;
mod stop;
mod storage;
mod sync;
mod tags;
mod watches;
mod writes;
mod xds;

pub use build::{Built, Config, Drain, Reloader};
pub use reconcile::{check_declarations, Change};
pub use reload::{ConfigSource, ConfigStatus};
