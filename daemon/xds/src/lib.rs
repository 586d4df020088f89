//! The xDS control plane: Envoy resources rendered from the proxy
//! snapshots the built-in proxy also runs on, served over the Aggregated
//! Discovery Service (state of the world and delta) on the agent's gRPC
//! port.

#![forbid(unsafe_code)]

mod ads;
pub mod bootstrap;
mod chain_routes;
mod gateways;
mod proxyless;
mod rbac;
pub mod render;
mod server;
mod status;

pub use ads::{Ads, ServiceEndpoints, SnapshotSource, Snapshots, MAX_RESOURCE_NAMES};
pub use proxyless::MAX_FOLLOWED_SERVICES;
pub use server::{AdsServer, CODEC_BUFFER_BYTES};
pub use status::{Nack, ProxyStatus, Streams, TypeStatus};

/// The largest request one ADS message may be: room for
/// [`MAX_RESOURCE_NAMES`] names, and a bound on what one stream can make
/// the agent buffer (a larger one ends the stream with `OutOfRange`).
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// The ADS service, ready to add to a tonic server.
pub fn service(
    source: std::sync::Arc<dyn SnapshotSource>,
    streams: std::sync::Arc<Streams>,
) -> AdsServer {
    AdsServer::new(Ads::new(source, streams))
}
