//! What can go wrong talking to an agent.

/// An error from the agent's HTTP API or from reaching it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The address given for the agent is not usable.
    #[error("invalid agent address {addr:?}: {reason}")]
    InvalidAddr {
        /// The address as given.
        addr: String,
        /// Why it is not usable.
        reason: String,
    },
    /// The CA file for an https:// agent is not usable.
    #[error("CA file {path}: {reason}")]
    CaFile {
        /// The file as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Nothing answered at the agent's address (refused, unreachable, timed out).
    #[error(
        "cannot reach the agent at {addr}: {reason}; is it running? \
         Point at another agent with -http-addr or MESH_HTTP_ADDR"
    )]
    Connect {
        /// The agent address tried.
        addr: String,
        /// The lowest-level cause, e.g. "Connection refused (os error 111)".
        reason: String,
    },
    /// The agent answered with a non-2xx status; `body` is its message.
    #[error("Unexpected response code: {status} ({})", body.trim())]
    Status {
        /// HTTP status code.
        status: u16,
        /// Response body: the server's explanation.
        body: String,
    },
    /// The request or response failed mid-way for another transport reason.
    #[error("request to {url} failed: {reason}")]
    Http {
        /// The URL requested.
        url: String,
        /// The lowest-level cause.
        reason: String,
    },
    /// The agent's answer was not the JSON we expected.
    #[error("unexpected answer from {url}: {reason}")]
    Decode {
        /// The URL requested.
        url: String,
        /// What did not match.
        reason: String,
    },
}

impl Error {
    /// The HTTP status for `Status` errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The innermost cause of an error chain, which is the part a person can act on.
pub(crate) fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
