use serde::{Deserialize, Serialize};

/// The default largest KV value (Consul's `kv_max_value_size`).
pub const MAX_KV_VALUE_BYTES: usize = 512 * 1024;

/// One key in the KV store with its Raft indexes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    pub key: String,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    pub flags: u64,
    pub create_index: u64,
    pub modify_index: u64,
    pub lock_index: u64,
}
