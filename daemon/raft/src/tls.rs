//! The Raft RPC over TLS: how a node dials its peers when the agent's
//! `tls.internal_rpc` says so, how a server proves it is one before it
//! becomes a voter, and what the listener learned of each caller.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// How long proving a server's identity may take.
pub const PROOF_TIMEOUT: Duration = Duration::from_secs(3);

/// The agent's RPC TLS, asked per new connection so that reloaded
/// certificates apply to the next connection without a restart.
pub trait RpcTls: Send + Sync {
    /// The config to dial peers with; `None` dials in plaintext.
    fn dial(&self) -> Option<Arc<rustls::ClientConfig>>;
    /// The config a server must pass to become a voter.
    fn proof(&self) -> Option<Arc<rustls::ClientConfig>>;
    /// The name servers are certified for (`server.<dc>.<domain>`).
    fn server_name(&self) -> String;
}

/// What the RPC listener learned of one caller; the listener's
/// connections carry it, and tonic hands it to each request.
#[derive(Clone, Debug)]
pub struct RpcPeer {
    pub remote: Option<SocketAddr>,
    /// May send Raft messages (append, vote, snapshot, read index).
    pub may_replicate: bool,
    /// May forward writes: it presented a certificate the port trusts, or
    /// the port does not ask for one (no `verify_incoming`).
    pub may_forward: bool,
    /// Who the caller proved to be, for logs (`server.dc1.consul`, `plaintext`).
    pub identity: String,
}

pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Connects to `addr`, over TLS when `tls` says to dial with it.
pub(crate) async fn dial(
    addr: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    server_name: &str,
) -> std::io::Result<TokioIo<Box<dyn Io>>> {
    let tcp = TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    let Some(config) = tls else {
        return Ok(TokioIo::new(Box::new(tcp)));
    };
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    Ok(TokioIo::new(Box::new(stream)))
}

/// Proves that whoever listens at `addr` holds a server certificate:
/// a TLS handshake under the proof config, bounded by `PROOF_TIMEOUT`.
pub(crate) async fn prove(tls: &dyn RpcTls, addr: &str) -> Result<(), String> {
    let Some(config) = tls.proof() else {
        return Err(
            "no CA is configured to check servers against (tls.internal_rpc.ca_file)".into(),
        );
    };
    match tokio::time::timeout(PROOF_TIMEOUT, dial(addr, Some(config), &tls.server_name())).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("{addr}: {e}")),
        Err(_) => Err(format!("{addr}: no TLS handshake within {PROOF_TIMEOUT:?}")),
    }
}
