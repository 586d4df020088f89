//! Consul's JSON wire shapes for the endpoints this client calls.
//!
//! Unknown fields are ignored so the client works against Consul too.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One entry of `GET /v1/kv/<key>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KvPair {
    /// Full key, without a leading `/`.
    pub key: String,
    /// The value, decoded from base64; `None` for a JSON `null`.
    #[serde(with = "base64_bytes", default)]
    pub value: Option<Vec<u8>>,
    /// Opaque number the writer chose.
    #[serde(default)]
    pub flags: u64,
    /// Raft index that created the key.
    #[serde(default)]
    pub create_index: u64,
    /// Raft index of the last write; the `cas` value for the next one.
    #[serde(default)]
    pub modify_index: u64,
    /// How many times a lock was taken on the key.
    #[serde(default)]
    pub lock_index: u64,
    /// Session holding the lock, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// `GET /v1/operator/raft/configuration`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RaftConfiguration {
    /// Every server in the Raft configuration.
    pub servers: Vec<RaftServer>,
    /// Raft index of this configuration.
    #[serde(default)]
    pub index: u64,
}

/// One server of the Raft configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftServer {
    /// Raft node ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Node name.
    #[serde(rename = "Node")]
    pub node: String,
    /// Server RPC address, `ip:port`.
    #[serde(rename = "Address")]
    pub address: String,
    /// Whether it is the current leader.
    #[serde(rename = "Leader")]
    pub leader: bool,
    /// Whether it votes.
    #[serde(rename = "Voter")]
    pub voter: bool,
}

/// One entry of `GET /v1/agent/members`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Member {
    /// Node name.
    pub name: String,
    /// Gossip address (IP).
    pub addr: String,
    /// Gossip port.
    pub port: u16,
    /// Serf tags: `role` (`consul` for servers, `node` for clients), `dc`, ...
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Serf status code: 0 none, 1 alive, 2 leaving, 3 left, 4 failed.
    pub status: i32,
    /// Status as a word (`alive|suspect|failed|left`); mesh sends it, Consul does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

impl Member {
    /// Status as a word, from `State` if the agent sent it, else from the code.
    pub fn status_name(&self) -> &str {
        if let Some(state) = &self.state {
            return state;
        }
        match self.status {
            1 => "alive",
            2 => "leaving",
            3 => "left",
            4 => "failed",
            _ => "none",
        }
    }

    /// `server` or `client`, from the `role` tag (`consul` means server, as in Consul).
    pub fn role(&self) -> &str {
        match self.tags.get("role").map(String::as_str) {
            Some("consul") | Some("server") => "server",
            Some("node") | Some("client") => "client",
            Some(other) => other,
            None => "unknown",
        }
    }

    /// The `dc` tag.
    pub fn datacenter(&self) -> &str {
        self.tags.get("dc").map_or("", String::as_str)
    }
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Consistency {
    /// Read from the leader (Consul's default).
    #[default]
    Default,
    /// Any server may answer, possibly behind (`?stale`).
    Stale,
    /// The leader confirms it still leads before answering (`?consistent`).
    Consistent,
}

/// Options for a read: consistency and blocking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryOptions {
    /// `?stale` / `?consistent`.
    pub consistency: Consistency,
    /// Block until the index passes this value (`?index=`).
    pub index: Option<u64>,
    /// Longest time to block (`?wait=`); the server's default is 5m.
    pub wait: Option<Duration>,
}

impl QueryOptions {
    /// A blocking read that returns once the data changes after `index`.
    pub fn blocking(index: u64, wait: Option<Duration>) -> QueryOptions {
        QueryOptions {
            index: Some(index),
            wait,
            ..QueryOptions::default()
        }
    }
}

/// What a read's headers tell about the answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryMeta {
    /// `X-Consul-Index`: pass it as `index` to block for the next change.
    pub index: u64,
    /// `X-Consul-KnownLeader`.
    pub known_leader: bool,
    /// `X-Consul-LastContact`, in milliseconds.
    pub last_contact_ms: u64,
}

mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

    pub fn serialize<S: Serializer>(value: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => s.serialize_str(&B64.encode(bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| B64.decode(t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_pair_decodes_base64_and_null() {
        let json = r#"[{"Key":"a","Value":"aGk=","Flags":3,"CreateIndex":5,"ModifyIndex":6,"LockIndex":0},
                      {"Key":"b","Value":null,"Flags":0,"CreateIndex":7,"ModifyIndex":7,"LockIndex":0}]"#;
        let pairs: Vec<KvPair> = serde_json::from_str(json).unwrap();
        assert_eq!(pairs[0].value.as_deref(), Some(&b"hi"[..]));
        assert_eq!((pairs[0].flags, pairs[0].modify_index), (3, 6));
        assert_eq!(pairs[1].value, None);
        let back = serde_json::to_value(&pairs[0]).unwrap();
        assert_eq!(back["Value"], "aGk=");
    }

    #[test]
    fn members_and_raft_shapes() {
        let json = r#"{"Name":"n1","Addr":"127.0.0.1","Port":8301,"Tags":{"role":"consul","dc":"dc1"},"Status":1}"#;
        let m: Member = serde_json::from_str(json).unwrap();
        assert_eq!(
            (m.status_name(), m.role(), m.datacenter()),
            ("alive", "server", "dc1")
        );
        let json = r#"{"Servers":[{"ID":"a","Node":"n1","Address":"127.0.0.1:8300","Leader":true,"Voter":true,"ProtocolVersion":"3"}],"Index":9}"#;
        let c: RaftConfiguration = serde_json::from_str(json).unwrap();
        assert!(c.servers[0].leader);
        assert_eq!(c.index, 9);
    }
}
