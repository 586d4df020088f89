//! mesh-proxy: the built-in mTLS sidecar data plane.
//!
//! This crate owns the data path of one sidecar: the public listener (mTLS
//! termination with SPIFFE identities, intentions at L4 and L7, live
//! re-authorization when the snapshot changes), upstream listeners (plain TCP
//! in, mTLS out with the peer's SPIFFE ID checked), the admin listener
//! (`/ready`, `/metrics`) and a blocking-query client that fetches the
//! [`ProxySnapshot`] from the agent. Computing snapshots and signing
//! certificates is the agent's job.
//!
//! ```no_run
//! # async fn demo() {
//! let (snapshots, _poller) = mesh_proxy::source::spawn(
//!     mesh_proxy::SourceConfig::new("http://127.0.0.1:8500", "web-sidecar-proxy"));
//! let admin = tokio::net::TcpListener::bind("127.0.0.1:19000").await.unwrap();
//! let proxy = mesh_proxy::Proxy::spawn(snapshots, Some(admin), async {
//!     let _ = tokio::signal::ctrl_c().await;
//! });
//! proxy.join().await;
//! # }
//! ```
#![forbid(unsafe_code)]

mod admin;
mod admin_config;
mod error;
mod inbound;
mod l7;
mod lb;
mod metrics;
mod outbound;
mod proxy;
mod routed;
mod runtime;
pub mod snapshot;
pub mod source;
pub mod spiffe;
mod state;
mod terminating;
mod tls;

pub use admin_config::{admin_bind_addr, ADMIN_KEYS};
pub use error::Error;
pub use mesh_policy::{IntentionSet, Layer, Policy, RequestView, Verdict};
pub use metrics::{Metrics, UpstreamMetrics};
pub use proxy::{Bound, Proxy, ProxyHandle, DRAIN_TIMEOUT};
pub use runtime::{runtime, DEFAULT_WORKERS};
pub use snapshot::{
    Endpoint, IngressRoute, Leaf, LinkedService, Outlier, Protocol, ProxySnapshot, PublicListener,
    Upstream,
};
pub use source::SourceConfig;
