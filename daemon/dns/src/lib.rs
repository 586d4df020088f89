//! The DNS interface of mesh: Consul's `<svc>.service.consul`,
//! `<node>.node.consul`, `<svc>.connect.consul`, RFC 2782 SRV and PTR names,
//! answered over UDP and TCP from the local catalog view (no Raft round
//! trip), with other names forwarded to recursors or refused.
//!
//! It owns the query-name grammar ([`name`]), the catalog index built for
//! the query path (updated incrementally on writes), answer building, a
//! per-worker cache of encoded answers, and the transports, which answer
//! the newest UDP queries first and bound every queue.

#![forbid(unsafe_code)]

mod answer;
mod cache;
mod catalog;
mod config;
mod forward;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod handler;
pub mod name;
mod records;
mod reply;
mod server;
mod tcp;
#[cfg(test)]
mod test_fixture;
mod udp;
mod view;

pub use config::{DnsAcl, DnsConfig};
pub use server::DnsServer;
