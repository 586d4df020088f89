//! Health checks run by the mesh agent, with Consul's semantics.
//!
//! This crate owns the check definitions as users write them (Consul's JSON,
//! see [`CheckDefinition::from_consul_json`]) and one task per check that
//! probes the target (HTTP, TCP, TTL, script, gRPC health), applies
//! `SuccessBeforePassing` / `FailuresBeforeWarning` / `FailuresBeforeCritical`,
//! and reports a [`CheckUpdate`] only when status or output changes. Wiring the
//! updates into local state and anti-entropy is the agent's job.
#![forbid(unsafe_code)]

mod definition;
mod duration;
mod grpc;
mod http;
mod output;
mod runner;
mod script;
mod tcp;
mod tls;

pub use definition::{
    CheckDefinition, CheckKind, DEFAULT_SCRIPT_TIMEOUT, DEFAULT_TIMEOUT, MIN_INTERVAL,
};
pub use duration::parse_duration;
pub use mesh_types::CheckStatus;
pub use output::MAX_OUTPUT_BYTES;
pub use runner::{CheckRunner, CheckUpdate, RunnerOptions};

/// Errors from parsing a check definition or driving a runner.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CheckError {
    /// A field of the check definition is missing, malformed or contradicts another.
    /// `field` is Consul's spelling, e.g. `Check.Interval`.
    #[error("{field}: {message}")]
    InvalidField {
        /// Consul's name of the field, prefixed with `Check.`.
        field: String,
        /// What is wrong and, where it helps, what is expected.
        message: String,
    },
    /// The definition as a whole is not a check mesh can run.
    #[error("Check: {0}")]
    Invalid(String),
    /// A script check was registered while the agent runs with scripts disabled.
    #[error(
        "script checks are disabled on this agent: check {check_id:?} has Args; \
         start the agent with enable_script_checks = true (or -enable-script-checks) to run it"
    )]
    ScriptChecksDisabled {
        /// The ID of the refused check.
        check_id: String,
    },
    /// `ttl_update` was called on a check that is not a TTL check.
    #[error(
        "check {check_id:?} is a {kind} check, not a TTL check: its status comes from its probe"
    )]
    NotTtl {
        /// The ID of the check.
        check_id: String,
        /// Its type, as Consul names it (`http`, `tcp`, ...).
        kind: &'static str,
    },
    /// The check's task is no longer running (stopped, or its update channel closed).
    #[error("check {check_id:?} is stopped")]
    Stopped {
        /// The ID of the check.
        check_id: String,
    },
}

impl CheckError {
    pub(crate) fn field(field: &str, message: impl Into<String>) -> CheckError {
        CheckError::InvalidField {
            field: format!("Check.{field}"),
            message: message.into(),
        }
    }
}
