//! Domain types shared by every mesh crate: catalog and KV records, and the
//! `Command` that travels through the Raft log. Free of I/O and async.

#![forbid(unsafe_code)]

mod acl;
mod catalog;
mod command;
mod coordinate;
mod duration;
mod intention;
mod kv;
mod legacy;
mod query;
mod session;
mod spiffe;
pub mod watch;

pub use acl::{
    node_identity_rules, service_identity_rules, templated_policy_needs_name,
    templated_policy_rules, AclAuthMethod, AclBindingRule, AclNodeIdentity, AclPolicy, AclRole,
    AclServiceIdentity, AclTemplatedPolicy, AclToken, AclTokenLinks, ANONYMOUS_TOKEN_ID,
    GLOBAL_MANAGEMENT_POLICY_ID, GLOBAL_MANAGEMENT_POLICY_NAME, TEMPLATED_POLICY_NAMES,
};
pub use catalog::{
    CheckStatus, ConfigEntry, HealthCheck, Node, Owner, Proxy, Service, Upstream, Weights,
    CONFIG_KINDS, DEFAULT_OWNER,
};
pub use command::{
    command_size, decode_command, decode_entry, encode_command, encode_entry, Command,
    CommandError, CoordinateUpdate, GroupedCommand, LogEntry, Outcome, TxnCatalogOp, TxnOp,
    TxnResult, MAX_ENTRY_BYTES,
};
pub use coordinate::{
    Coordinate, CoordinateError, COORDINATE_DIMENSIONS, COORDINATE_MAX_COMPONENT,
    COORDINATE_MAX_ERROR, COORDINATE_MIN_HEIGHT, MAX_COORDINATE_BATCH,
};
pub use duration::{format_go_duration, parse_go_duration};
pub use intention::{
    sort_by_precedence, HeaderMatch, HttpMatch, Intention, IntentionAction, Permission,
};
pub use kv::{KvEntry, MAX_KV_VALUE_BYTES};
pub use query::{
    PreparedQuery, MAX_QUERIES, MAX_QUERY_LIST, MAX_QUERY_NAME_BYTES, MAX_QUERY_REGEXP_BYTES,
    TEMPLATE_NAME_PREFIX_MATCH,
};
pub use session::{
    Session, SessionBehavior, DEFAULT_LOCK_DELAY_MS, MAX_LOCK_DELAY_MS, MAX_SESSION_CHECKS,
    MAX_SESSION_NAME_BYTES, MAX_SESSION_TTL_MS, MIN_SESSION_TTL_MS,
};
pub use spiffe::{SpiffeId, DEFAULT_NAMESPACE};
