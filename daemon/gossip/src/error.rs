//! The crate's error type.

use std::io;
use std::net::SocketAddr;

/// Everything that can go wrong starting, joining or leaving a gossip pool.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    /// The UDP or TCP socket could not be bound to the gossip address.
    #[error("could not bind gossip address {addr} ({proto}): {source}; is another agent already using this port?")]
    Bind {
        /// The address we tried to bind.
        addr: SocketAddr,
        /// "udp" or "tcp".
        proto: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// A gossip encryption key is malformed.
    #[error("invalid gossip encryption key: {0}")]
    InvalidKey(String),

    /// The configuration cannot work (for example tags too large to gossip).
    #[error("invalid gossip configuration: {0}")]
    Config(String),

    /// No address given to `join` answered; each failure is listed.
    #[error("failed to join any of {}: {}", .0.len(), join_reasons(.0))]
    Join(Vec<JoinFailure>),

    /// The graceful leave did not reach every member before the timeout.
    #[error("timed out after {0:?} waiting for the leave message to be gossiped")]
    LeaveTimeout(std::time::Duration),

    /// A user event whose encoding (name, payload, filters) exceeds
    /// [`crate::MAX_EVENT_BYTES`]; the size is given.
    #[error("the event takes {0} bytes encoded; gossip allows {max}", max = crate::MAX_EVENT_BYTES)]
    EventTooLarge(usize),

    /// This node has already left the cluster; start a new gossip instance to rejoin.
    #[error("this node has left the gossip pool")]
    Left,

    /// `force-leave` was refused.
    #[error(transparent)]
    ForceLeave(ForceLeaveError),

    /// The gossip tasks were shut down.
    #[error("gossip is shut down")]
    Shutdown,
}

/// Why joining one address failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinFailure {
    /// The address we tried.
    pub addr: SocketAddr,
    /// A human-readable reason (unreachable, key mismatch, timeout...).
    pub reason: String,
}

fn join_reasons(failures: &[JoinFailure]) -> String {
    if failures.is_empty() {
        return "no addresses given".to_owned();
    }
    failures
        .iter()
        .map(|f| format!("{}: {}", f.addr, f.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why `force-leave` refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForceLeaveError {
    /// No member by that name is known (or it was already forgotten).
    #[error("no member named {0:?} in the gossip pool")]
    Unknown(String),
    /// The member is alive (or only suspected): it would refute a leave.
    #[error("member {0:?} is not failed: force-leave removes only failed members")]
    Alive(String),
    /// This node has left the pool itself.
    #[error("this node has left the gossip pool")]
    Left,
}
