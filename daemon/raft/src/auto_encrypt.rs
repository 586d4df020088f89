//! auto_encrypt over the server RPC port: a client agent, holding only the
//! agents' CA, asks a server to sign its CSR with the Connect CA; the
//! server checks the agent token. With no CSR the answer carries only the
//! roots, which the client polls to follow a root rotation.

use std::sync::Arc;
use std::time::Duration;

use mesh_proto::raft::Payload;
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::node::TOKEN_HEADER;
use crate::Network;

/// What a client agent asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AutoEncryptRequest {
    /// The client's node name; the token needs `node:write` on it.
    pub node: String,
    /// The client's node ID, in its certificate's SPIFFE ID.
    pub node_id: String,
    /// A PEM CSR; `None` asks only for the roots.
    pub csr: Option<String>,
}

/// What the server answers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AutoEncryptReply {
    /// The signed certificate and its chain (empty when no CSR was sent).
    pub cert_pem: String,
    /// The Connect CA's trusted roots, PEM.
    pub roots_pem: Vec<String>,
    /// The ID of the root that signs now.
    pub active_root_id: String,
    /// The Connect CA's SPIFFE trust domain (for the CSR's URI).
    pub trust_domain: String,
    /// When the signed certificate expires, unix seconds (0 without one).
    pub valid_before: i64,
}

/// The server's signer: the caller's token and request in, the reply out.
pub type AutoEncryptSigner = Arc<
    dyn Fn(
            Option<String>,
            AutoEncryptRequest,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<AutoEncryptReply, String>> + Send>,
        > + Send
        + Sync,
>;

impl Network {
    /// Asks the server at `addr` to sign (or, without a CSR, for the roots).
    pub async fn auto_encrypt_sign(
        &self,
        addr: &str,
        token: Option<&str>,
        request: &AutoEncryptRequest,
    ) -> Result<AutoEncryptReply, String> {
        let data = encode(request).map_err(|e| e.to_string())?;
        let mut client = self.client(addr).map_err(|e| e.to_string())?;
        let mut req = tonic::Request::new(Payload { data });
        req.set_timeout(Duration::from_secs(10));
        if let Some(token) = token {
            if let Ok(value) = token.parse() {
                req.metadata_mut().insert(TOKEN_HEADER, value);
            }
        }
        let reply = client
            .auto_encrypt_sign(req)
            .await
            .map_err(|s| format!("{addr}: {}", s.message()))?;
        let result: Result<AutoEncryptReply, String> =
            decode(&reply.into_inner().data).map_err(|e| e.to_string())?;
        result
    }
}
