//! tfplug: the Terraform plugin protocol v6 in Rust, on tonic.
//!
//! It owns the go-plugin handshake and AutoMTLS (`serve`), the protocol's
//! gRPC services, schemas with validators and plan modifiers (`schema`),
//! Terraform values with unknowns and their msgpack/JSON codecs (`value`),
//! diagnostics with attribute paths (`diag`), the generic plan (`plan`), and
//! the `Provider`/`Resource`/`DataSource` traits a provider implements.
#![forbid(unsafe_code)]

pub mod diag;
pub mod docs;
mod msgpack;
pub mod plan;
pub mod proto;
pub mod provider;
pub mod schema;
pub mod serve;
pub mod server;
mod tls;
pub mod value;

#[cfg(test)]
mod tests;

pub use diag::{AttrPath, Diagnostic, Diagnostics, Severity};
pub use plan::{plan, Plan};
pub use provider::{DataSource, Provider, Resource};
pub use schema::{Attribute, Block, NestedBlock, Nesting, Schema, Validator};
pub use serve::serve;
pub use server::ProviderService;
pub use value::{Type, Value};

/// Errors from serving the protocol or decoding values.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value did not match its schema type or was malformed msgpack/JSON.
    #[error("cannot decode value at {path:?}: {reason}")]
    Decode {
        /// Where in the value.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// The process was not started by Terraform, or no common protocol.
    #[error("plugin handshake: {0}")]
    Handshake(String),
    /// Building the AutoMTLS configuration failed.
    #[error("AutoMTLS: {0}")]
    Tls(String),
    /// Listening or writing the handshake line failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(String),
}
