use sha2::{Digest as _, Sha256};

use crate::State;

/// A snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes are not a snapshot of this format version.
    #[error("snapshot is corrupt or from an unsupported version: {0}")]
    Decode(String),
}

/// Bumped when the snapshot layout changes incompatibly. Format 8 is
/// format 7 with roles, token links, auth methods and binding rules appended.
const FORMAT_VERSION: u8 = 8;
/// Format 7: format 6 with the coordinate table appended.
const FORMAT_WITHOUT_ACL_EXT: u8 = 7;
/// Format 6: format 5 with the prepared query table appended.
const FORMAT_WITHOUT_COORDINATES: u8 = 6;
/// Format 5: format 4's body behind its SHA-256, so a changed byte
/// anywhere is caught before anything is restored; no prepared queries.
const FORMAT_WITHOUT_QUERIES: u8 = 5;
/// Format 4: the body alone, no checksum.
const FORMAT_UNCHECKED: u8 = 4;
/// Format 3 had no session tables.
const FORMAT_WITHOUT_SESSIONS: u8 = 3;
/// Format 2 had no ACL tables.
const FORMAT_WITHOUT_ACL: u8 = 2;

/// What a snapshot holds, table by table (`mesh snapshot inspect`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSummary {
    /// The snapshot layout version.
    pub format: u8,
    /// The Raft index of the last write it holds.
    pub index: u64,
    /// Row counts by table name, in a stable order.
    pub tables: Vec<(&'static str, usize)>,
}

/// Decodes a whole snapshot (so a damaged one fails) and counts its rows.
pub fn inspect_snapshot(bytes: &[u8]) -> Result<SnapshotSummary, SnapshotError> {
    let state = State::from_snapshot(bytes)?;
    Ok(SnapshotSummary {
        format: bytes[0],
        index: state.last_index,
        tables: vec![
            ("KV", state.kv.len()),
            ("Nodes", state.nodes.len()),
            ("Services", state.services.len()),
            ("Checks", state.checks.len()),
            ("ConfigEntries", state.config.len()),
            ("Intentions", state.intentions.len()),
            ("CA", usize::from(state.ca.is_some())),
            ("ACLTokens", state.acl.tokens.len()),
            ("ACLPolicies", state.acl.policies.len()),
            ("ACLRoles", state.acl_ext.roles.len()),
            ("ACLAuthMethods", state.acl_ext.auth_methods.len()),
            ("ACLBindingRules", state.acl_ext.binding_rules.len()),
            ("Sessions", state.sessions.sessions.len()),
            ("PreparedQueries", state.queries.queries.len()),
            ("Coordinates", state.coordinates.by_node.len()),
        ],
    })
}

impl State {
    pub(crate) fn to_snapshot(&self) -> Vec<u8> {
        // Encoding plain maps and strings cannot fail.
        let body = postcard::to_stdvec(self).expect("state encodes");
        let mut out = Vec::with_capacity(1 + 32 + body.len());
        out.push(FORMAT_VERSION);
        out.extend(Sha256::digest(&body));
        out.extend(body);
        out
    }

    pub(crate) fn from_snapshot(bytes: &[u8]) -> Result<State, SnapshotError> {
        let (&format, rest) = bytes
            .split_first()
            .ok_or_else(|| SnapshotError::Decode("empty".into()))?;
        let body = match format {
            FORMAT_VERSION
            | FORMAT_WITHOUT_ACL_EXT
            | FORMAT_WITHOUT_COORDINATES
            | FORMAT_WITHOUT_QUERIES => {
                if rest.len() < 32 {
                    return Err(SnapshotError::Decode(
                        "truncated before its checksum".into(),
                    ));
                }
                let (digest, body) = rest.split_at(32);
                if Sha256::digest(body).as_slice() != digest {
                    return Err(SnapshotError::Decode(
                        "checksum mismatch: the file was changed or damaged".into(),
                    ));
                }
                body
            }
            FORMAT_WITHOUT_ACL..=FORMAT_UNCHECKED => rest,
            v => return Err(SnapshotError::Decode(format!("format version {v}"))),
        };
        let mut whole = body.to_vec();
        whole.extend(tables_added_after(format));
        postcard::from_bytes(&whole).map_err(|e| SnapshotError::Decode(e.to_string()))
    }
}

/// Empty tables for everything appended to `State` after `format`:
/// postcard writes fields back to back, so an older body followed by
/// them is a current body.
fn tables_added_after(format: u8) -> Vec<u8> {
    fn empty<T: Default + serde::Serialize>() -> Vec<u8> {
        postcard::to_stdvec(&T::default()).expect("empty tables encode")
    }
    let mut out = Vec::new();
    if format <= FORMAT_WITHOUT_ACL {
        out.extend(empty::<crate::acl::AclTables>());
    }
    if format <= FORMAT_WITHOUT_SESSIONS {
        out.extend(empty::<crate::sessions::SessionTables>());
    }
    if format <= FORMAT_WITHOUT_QUERIES {
        out.extend(empty::<crate::queries::QueryTables>());
    }
    if format <= FORMAT_WITHOUT_COORDINATES {
        out.extend(empty::<crate::coordinates::CoordinateTables>());
    }
    if format <= FORMAT_WITHOUT_ACL_EXT {
        out.extend(empty::<crate::acl_ext::AclExtTables>());
    }
    out
}
