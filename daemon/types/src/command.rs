use serde::{Deserialize, Serialize};

use crate::{AclPolicy, AclToken, ConfigEntry, HealthCheck, Intention, KvEntry, Node, Service};

/// One KV operation inside a transaction (Consul's `PUT /v1/txn` verbs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    Set {
        key: String,
        // As bytes, not a sequence of numbers: the same encoding, copied whole.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        flags: u64,
    },
    Cas {
        key: String,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        flags: u64,
        index: u64,
    },
    Get {
        key: String,
    },
    GetTree {
        key: String,
    },
    CheckIndex {
        key: String,
        index: u64,
    },
    CheckNotExists {
        key: String,
    },
    Delete {
        key: String,
    },
    DeleteTree {
        key: String,
    },
    DeleteCas {
        key: String,
        index: u64,
    },
    /// A node, service, check or session operation (appended: older log
    /// entries still decode).
    Catalog(Box<TxnCatalogOp>),
}

/// A catalog or session operation inside a transaction (Consul's `Node`,
/// `Service`, `Check` and `Session` verbs). `cas` is Consul's `cas` and
/// `delete-cas`: the stored modify index must equal it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnCatalogOp {
    NodeSet {
        node: Node,
        cas: Option<u64>,
    },
    NodeGet {
        node: String,
    },
    NodeDelete {
        node: String,
        cas: Option<u64>,
    },
    ServiceSet {
        node: String,
        service: Service,
        cas: Option<u64>,
    },
    ServiceGet {
        node: String,
        service_id: String,
    },
    ServiceDelete {
        node: String,
        service_id: String,
        cas: Option<u64>,
        owner: String,
        takeover: bool,
    },
    CheckSet {
        node: String,
        check: HealthCheck,
        cas: Option<u64>,
    },
    CheckDelete {
        node: String,
        check_id: String,
        cas: Option<u64>,
    },
    SessionDelete {
        id: String,
    },
}

/// One result of a transaction with catalog operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnResult {
    Kv(KvEntry),
    Node(Node),
    Service { node: String, service: Service },
    Check { node: String, check: HealthCheck },
}

/// A change to the replicated state. Entries in the Raft log carry a command
/// encoded with [`encode_command`]; replicas decode it at apply time, so a
/// command from a newer version is refused as a value rather than a crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Does nothing; used to commit a barrier.
    Noop,
    /// Set a key; with `cas`, only if its modify index equals it (0: must not exist).
    KvSet {
        key: String,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        flags: u64,
        cas: Option<u64>,
    },
    /// Delete a key or (with `recurse`) a prefix; `cas` as for `KvSet`.
    KvDelete {
        key: String,
        recurse: bool,
        cas: Option<u64>,
    },
    /// Atomic KV transaction: all operations apply, or none.
    Txn { ops: Vec<TxnOp> },
    /// Create or update a node.
    NodeRegister { node: Node },
    /// Remove a node with its services and checks.
    NodeDeregister { node: String },
    /// Catalog registration: node, optional service and checks, atomically.
    Register {
        node: Node,
        skip_node_update: bool,
        service: Option<Service>,
        checks: Vec<HealthCheck>,
        takeover: bool,
    },
    /// Create or update a service instance on an existing node (no owner takeover).
    ServiceRegister { node: String, service: Service },
    /// Create or update a check on an existing node.
    CheckRegister { node: String, check: HealthCheck },
    /// Remove a service instance and its checks; refused (409) if `owner`
    /// differs from the stored owner unless `takeover`.
    ServiceDeregister {
        node: String,
        service_id: String,
        owner: String,
        takeover: bool,
    },
    /// Remove a check.
    CheckDeregister { node: String, check_id: String },
    /// Create or update a config entry; with `cas`, only if its modify index equals it.
    ConfigSet {
        entry: ConfigEntry,
        cas: Option<u64>,
        takeover: bool,
    },
    /// Delete a config entry.
    ConfigDelete {
        kind: String,
        name: String,
        owner: String,
        takeover: bool,
    },
    /// Replace the whole state with a snapshot (`PUT /v1/snapshot`).
    Restore {
        #[serde(with = "serde_bytes")]
        snapshot: Vec<u8>,
    },
    /// Create or update the intention for its (source, destination) pair.
    IntentionSet {
        intention: Intention,
        takeover: bool,
    },
    /// Delete the intention for a pair; refused (409) for another owner's.
    IntentionDelete {
        source: String,
        destination: String,
        owner: String,
        takeover: bool,
    },
    /// Make `intentions` the whole set for `destination` (a
    /// `service-intentions` config entry write; empty deletes them all).
    IntentionsReplace {
        destination: String,
        intentions: Vec<Intention>,
        owner: String,
        takeover: bool,
    },
    /// Replace the CA state (JSON owned by mesh-ca, computed by the leader);
    /// with `cas`, only if the stored state's modify index equals it.
    CaSet {
        state_json: String,
        cas: Option<u64>,
    },
    /// Intention and config-entry commands applied together or not at all
    /// (a config reload): the first refusal is the answer and nothing changes.
    AllOrNothing { commands: Vec<GroupedCommand> },
    /// A leaf for `key` (`<server>/<service>`) was issued by `root_id`:
    /// rotation progress is the share of keys issued by the active root.
    CaLeafIssued { key: String, root_id: String },
    /// Create or update an ACL policy; its name must be unique.
    AclPolicySet { policy: AclPolicy },
    /// Delete an ACL policy (refused for the built-in one).
    AclPolicyDelete { id: String },
    /// Create or update an ACL token; its secret must be unique and its
    /// policies must exist.
    AclTokenSet { token: AclToken },
    /// Delete an ACL token (refused for the anonymous token).
    AclTokenDelete { accessor_id: String },
    /// The one-time bootstrap: stores a management token and closes
    /// bootstrapping. Refused once done, unless the same secret is already
    /// stored (a configured initial management token written again).
    AclBootstrap { token: AclToken },
    /// Create a session; refused if its node or a bound check is missing,
    /// or a bound check is critical.
    SessionCreate { session: crate::Session },
    /// Invalidate a session: its locks are released or their keys deleted.
    SessionDestroy { id: String },
    /// Set a key and take its lock for `session`: `Bool(false)` if another
    /// session holds it. The same session acquiring again updates the value.
    KvAcquire {
        key: String,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        flags: u64,
        session: String,
    },
    /// Set a key and give up its lock: `Bool(false)` unless `session` holds it.
    KvRelease {
        key: String,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        flags: u64,
        session: String,
    },
    /// Renew a session's TTL. Answered by the leader from memory, never
    /// written to the log (as in Consul, renewals are not Raft writes).
    SessionRenew { id: String },
    /// Create or replace a prepared query (by ID); its name must be free
    /// and its session must exist.
    QuerySet { query: crate::PreparedQuery },
    /// Delete a prepared query.
    QueryDelete { id: String },
    /// Store nodes' network coordinates (already validated); updates for
    /// nodes not in the catalog are skipped, as in Consul.
    CoordinateBatch { updates: Vec<CoordinateUpdate> },
    /// Create or update a token with its roles, identities, expiry and
    /// auth method; [`Command::AclTokenSet`] stores a token without them.
    AclTokenSetLinked {
        token: AclToken,
        links: crate::AclTokenLinks,
    },
    /// Create or update a role; its name must be unique and its policies exist.
    AclRoleSet { role: crate::AclRole },
    /// Delete a role (tokens drop their link to it).
    AclRoleDelete { id: String },
    /// Create or update an auth method (by name).
    AclAuthMethodSet { method: crate::AclAuthMethod },
    /// Delete an auth method, its binding rules and the tokens its logins made.
    AclAuthMethodDelete { name: String },
    /// Create or update a binding rule; its auth method must exist.
    AclBindingRuleSet { rule: crate::AclBindingRule },
    /// Delete a binding rule.
    AclBindingRuleDelete { id: String },
    /// Delete these expired tokens (the leader's reaper), each only if it
    /// has expired by `now_unix_ms`.
    AclTokensExpire {
        accessors: Vec<String>,
        now_unix_ms: u64,
    },
}

/// One node's coordinate in a [`Command::CoordinateBatch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinateUpdate {
    pub node: String,
    /// Network segment (always empty: mesh has one LAN segment).
    pub segment: String,
    pub coord: crate::Coordinate,
}

/// The commands an [`Command::AllOrNothing`] group may hold: only these two
/// tables are cheap to put back, and the type admits no nesting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupedCommand {
    /// As [`Command::IntentionSet`].
    IntentionSet {
        intention: Intention,
        takeover: bool,
    },
    /// As [`Command::IntentionDelete`].
    IntentionDelete {
        source: String,
        destination: String,
        owner: String,
        takeover: bool,
    },
    /// As [`Command::IntentionsReplace`].
    IntentionsReplace {
        destination: String,
        intentions: Vec<Intention>,
        owner: String,
        takeover: bool,
    },
    /// As [`Command::ConfigSet`].
    ConfigSet {
        entry: ConfigEntry,
        cas: Option<u64>,
        takeover: bool,
    },
    /// As [`Command::ConfigDelete`].
    ConfigDelete {
        kind: String,
        name: String,
        owner: String,
        takeover: bool,
    },
}

impl From<GroupedCommand> for Command {
    fn from(g: GroupedCommand) -> Command {
        match g {
            GroupedCommand::IntentionSet {
                intention,
                takeover,
            } => Command::IntentionSet {
                intention,
                takeover,
            },
            GroupedCommand::IntentionDelete {
                source,
                destination,
                owner,
                takeover,
            } => Command::IntentionDelete {
                source,
                destination,
                owner,
                takeover,
            },
            GroupedCommand::IntentionsReplace {
                destination,
                intentions,
                owner,
                takeover,
            } => Command::IntentionsReplace {
                destination,
                intentions,
                owner,
                takeover,
            },
            GroupedCommand::ConfigSet {
                entry,
                cas,
                takeover,
            } => Command::ConfigSet {
                entry,
                cas,
                takeover,
            },
            GroupedCommand::ConfigDelete {
                kind,
                name,
                owner,
                takeover,
            } => Command::ConfigDelete {
                kind,
                name,
                owner,
                takeover,
            },
        }
    }
}

/// What one Raft log entry holds. Group commit packs concurrent proposals
/// into one `Batch`; a batch holds plain commands, never another batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogEntry {
    /// One proposal.
    One(Box<Command>),
    /// Several proposals committed together, applied in order and each
    /// answered on its own.
    Batch(Vec<Command>),
}

/// The largest encoded command or log entry. Far below the Raft transport's
/// message limit, so one entry always fits in an AppendEntries message; the
/// largest command in practice is a snapshot restore.
pub const MAX_ENTRY_BYTES: usize = 32 << 20;

/// What applying a command produced; identical on every replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Applied.
    Done,
    /// A conditional write: `true` if it took effect (Consul's `?cas=` answer).
    Bool(bool),
    /// Refused without changing anything; the text says why.
    Rejected(String),
    /// Refused: the object is managed by another owner.
    Conflict { what: String, owner: String },
    /// A transaction: results of reads and writes, or the errors that rolled it back.
    Txn {
        results: Vec<KvEntry>,
        errors: Vec<(usize, String)>,
    },
    /// One outcome per command of a `Batch`.
    Batch(Vec<Outcome>),
    /// A transaction with catalog or session operations: results of every
    /// kind, or the errors that rolled it back (appended: a KV-only
    /// transaction still answers `Txn`, which older servers read).
    TxnAll {
        results: Vec<TxnResult>,
        errors: Vec<(usize, String)>,
    },
}

/// A command's bytes could not be decoded or encoded.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Unknown variant or malformed bytes, typically from a newer version.
    #[error("unknown or malformed command ({0}); is a newer mesh version in the cluster?")]
    Decode(String),
    /// Over [`MAX_ENTRY_BYTES`]: refused before anything is decoded or proposed.
    #[error("command of {0} bytes is over the {MAX_ENTRY_BYTES}-byte Raft entry limit")]
    TooLarge(usize),
    /// Could not be encoded (never expected for well-formed values).
    #[error("encode command: {0}")]
    Encode(String),
}

/// First byte of every command and log entry this version encodes. No
/// encoding of an earlier version starts with it (theirs start with a
/// command's variant index, below 0x80), so both can be told apart.
const FORMAT: u8 = 0xf2;

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CommandError> {
    let bytes = postcard::to_extend(value, vec![FORMAT])
        .map_err(|e| CommandError::Encode(e.to_string()))?;
    match bytes.len() {
        n if n > MAX_ENTRY_BYTES => Err(CommandError::TooLarge(n)),
        _ => Ok(bytes),
    }
}

/// Decoding is bounded: the input is at most [`MAX_ENTRY_BYTES`], the types
/// are not recursive (so depth is fixed), postcard never allocates more
/// than the input could describe, and nothing may follow the value.
fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, CommandError> {
    if bytes.len() > MAX_ENTRY_BYTES {
        return Err(CommandError::TooLarge(bytes.len()));
    }
    match postcard::take_from_bytes(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(CommandError::Decode(format!(
            "{} bytes left over after the command",
            rest.len()
        ))),
        Err(e) => Err(CommandError::Decode(e.to_string())),
    }
}

/// Encode a command (a proposal sent to another server).
pub fn encode_command(cmd: &Command) -> Result<Vec<u8>, CommandError> {
    encode(cmd)
}

/// Decode a command (a proposal received from another server, which may
/// run the previous version).
pub fn decode_command(bytes: &[u8]) -> Result<Command, CommandError> {
    match bytes.split_first() {
        Some((&FORMAT, rest)) => decode(rest),
        _ => crate::legacy::command(bytes, false),
    }
}

/// A command's encoded size, computed without encoding it; refused over
/// [`MAX_ENTRY_BYTES`].
pub fn command_size(cmd: &Command) -> Result<usize, CommandError> {
    match postcard::experimental::serialized_size(cmd) {
        Ok(n) if n + 1 > MAX_ENTRY_BYTES => Err(CommandError::TooLarge(n + 1)),
        Ok(n) => Ok(n + 1),
        Err(e) => Err(CommandError::Encode(e.to_string())),
    }
}

/// Encode a log entry.
pub fn encode_entry(entry: &LogEntry) -> Result<Vec<u8>, CommandError> {
    encode(entry)
}

/// Decode a log entry (at apply time, on every replica), including one
/// the previous version wrote, so an upgraded server replays its log.
pub fn decode_entry(bytes: &[u8]) -> Result<LogEntry, CommandError> {
    match bytes.split_first() {
        Some((&FORMAT, rest)) => decode(rest),
        _ => crate::legacy::entry(bytes),
    }
}

/// Decode without the format byte (for `legacy`).
pub(crate) fn decode_bare<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, CommandError> {
    decode(bytes)
}

impl TryFrom<Command> for GroupedCommand {
    type Error = Command;

    fn try_from(cmd: Command) -> Result<GroupedCommand, Command> {
        Ok(match cmd {
            Command::IntentionSet {
                intention,
                takeover,
            } => GroupedCommand::IntentionSet {
                intention,
                takeover,
            },
            Command::IntentionDelete {
                source,
                destination,
                owner,
                takeover,
            } => GroupedCommand::IntentionDelete {
                source,
                destination,
                owner,
                takeover,
            },
            Command::IntentionsReplace {
                destination,
                intentions,
                owner,
                takeover,
            } => GroupedCommand::IntentionsReplace {
                destination,
                intentions,
                owner,
                takeover,
            },
            Command::ConfigSet {
                entry,
                cas,
                takeover,
            } => GroupedCommand::ConfigSet {
                entry,
                cas,
                takeover,
            },
            Command::ConfigDelete {
                kind,
                name,
                owner,
                takeover,
            } => GroupedCommand::ConfigDelete {
                kind,
                name,
                owner,
                takeover,
            },
            other => return Err(other),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let cmd = Command::KvSet {
            key: "a/b".into(),
            value: b"hello".to_vec(),
            flags: 7,
            cas: Some(3),
        };
        assert_eq!(decode_command(&encode_command(&cmd).unwrap()).unwrap(), cmd);
    }

    #[test]
    fn oversized_input_is_refused_before_decoding() {
        let huge = vec![0u8; MAX_ENTRY_BYTES + 1];
        assert!(matches!(
            decode_entry(&huge),
            Err(CommandError::TooLarge(n)) if n == MAX_ENTRY_BYTES + 1
        ));
        let restore = Command::Restore {
            snapshot: vec![0; MAX_ENTRY_BYTES],
        };
        assert!(matches!(
            encode_command(&restore),
            Err(CommandError::TooLarge(_))
        ));
    }

    #[test]
    fn entries_round_trip() {
        let one = LogEntry::One(Box::new(Command::Noop));
        assert_eq!(decode_entry(&encode_entry(&one).unwrap()).unwrap(), one);
        let batch = LogEntry::Batch(vec![
            Command::Noop,
            Command::AllOrNothing {
                commands: vec![GroupedCommand::ConfigDelete {
                    kind: "mesh".into(),
                    name: "mesh".into(),
                    owner: "api".into(),
                    takeover: false,
                }],
            },
        ]);
        assert_eq!(decode_entry(&encode_entry(&batch).unwrap()).unwrap(), batch);
    }

    #[test]
    fn unknown_variant_is_an_error_not_a_panic() {
        // Variant 200 does not exist in this version.
        let err = decode_command(&[200, 1, 2, 3]).unwrap_err();
        assert!(err.to_string().contains("unknown or malformed command"));
        assert!(decode_command(&[]).is_err());
        // A valid command followed by anything else is not a command.
        assert!(decode_command(&[0, 0]).is_err());
    }
}
