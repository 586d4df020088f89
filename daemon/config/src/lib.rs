//! mesh-config: the agent's configuration.
//!
//! Two stages, as Consul does it: HCL/JSON files and flags are read into
//! [`RawConfig`] (every key optional, unknown keys rejected with a
//! suggestion), merged in order, then [`RuntimeConfig::build`] applies
//! defaults and validates. Every error names where it is: `file:line:col`
//! for files, the flag for flags.
#![forbid(unsafe_code)]

mod autopilot;
mod consul_only;
mod duration;
mod error;
mod hcl_value;
mod json_value;
mod legacy;
mod load;
mod raw;
#[cfg(test)]
mod reference;
mod resources;
mod runtime;
mod spans;
mod tls;
mod validate;
mod watches;

pub use autopilot::{Autopilot, RawAutopilot};
pub use duration::parse_duration;
pub use error::{ConfigError, Error, Origin, Pos, ValidationError};
pub use load::{
    dir_files, expand, load, load_file, parse_document, parse_str, Document, Format, Source,
};
pub use raw::{
    OneOrMany, RawAcl, RawAclTokens, RawAddresses, RawConfig, RawConfigEntries, RawConnect,
    RawDnsConfig, RawPerformance, RawPorts, RawTelemetry, RawUiConfig,
};
pub use resources::{
    camel_keys, load_all, load_resources, parse_resources, Decl, Loc, ResourceKind,
};
pub use runtime::{
    AclConfig, AclPolicy, Addresses, DnsConfig, Limits, LiveConfig, LogFile, Ports, RuntimeConfig,
    WatchConfig, WatchHandler,
};
pub use tls::{
    AutoEncrypt, RawAutoEncrypt, RawTls, RawTlsFiles, TlsConfig, TlsSurface, TlsVersion,
};
