//! The crate's error type.

use std::io;

/// Errors of the sidecar.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The snapshot JSON did not parse.
    #[error("invalid proxy snapshot: {0}")]
    Snapshot(#[source] serde_json::Error),
    /// The leaf certificate or key in the snapshot is unusable.
    #[error("invalid leaf certificate or key: {0}")]
    Leaf(String),
    /// The peer presented a certificate without the expected SPIFFE identity.
    #[error("peer identity is {}, expected {expected}", .got.as_deref().unwrap_or("missing (no single SPIFFE URI SAN)"))]
    Identity {
        /// What we wanted (a SPIFFE ID, or a description like `a service in <td>`).
        expected: String,
        /// What the certificate carried, if anything.
        got: Option<String>,
    },
    /// Binding a listener failed.
    #[error("bind {addr}: {source}")]
    Bind {
        /// The address we tried.
        addr: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Every endpoint of an upstream failed to connect.
    #[error("upstream {upstream}: no endpoint reachable (last error: {last})")]
    NoEndpoint {
        /// Upstream destination name.
        upstream: String,
        /// The last attempt's error.
        last: String,
    },
    /// The connection was closed because an intention (now) denies it.
    #[error("denied: {0}")]
    Denied(String),
    /// The agent endpoint answered with an error or unexpected body.
    #[error("agent {url}: {message}")]
    Agent {
        /// The URL polled.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// Plain I/O.
    #[error(transparent)]
    Io(#[from] io::Error),
}
