//! The agent's side of the Connect CA: applying a `ca { }` block from files.

use mesh_config::Loc;
use serde_json::Value;

use crate::build::Agent;

impl Agent {
    /// Apply a `ca { provider = ..., config { } }` block.
    pub(crate) async fn apply_ca_block(&self, _block: &Value, loc: &Loc) -> Result<(), String> {
        Err(format!(
            "{loc}: ca blocks need the Connect CA, which this build does not include yet"
        ))
    }
}
