//! The server RPC port's listener: at most `limits.rpc_max_conns_per_client`
//! connections per client IP, TLS per `tls.internal_rpc`, and what each
//! caller proved (`mesh_raft::RpcPeer`), which the Raft service checks.
//!
//! With a certificate configured the port takes TLS; plaintext callers are
//! still let in (a staged switch, as in Consul) unless `verify_incoming`.
//! With `verify_server_hostname`, only callers whose certificate names
//! `server.<dc>.<domain>` may send Raft messages. Handshakes run in their
//! own tasks, bounded by `HANDSHAKE_TIMEOUT`, so a slow caller never holds
//! up the accept loop.
//!
//! The gRPC TLS port (`ports.grpc_tls`, xDS) takes its connections the
//! same way, TLS only, per `tls.grpc`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use mesh_raft::RpcPeer;
use mesh_tls::SurfaceTls;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::conn_limit::{PerClient, RateLimitedLog, Slot};

/// How long a caller has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections handshaken but not yet taken by the server.
const READY_QUEUE: usize = 64;
/// The first byte of a TLS record carrying a handshake.
const TLS_HANDSHAKE: u8 = 0x16;

/// The TLS side of the listener.
#[derive(Clone)]
pub(crate) struct TlsPolicy {
    tls: Arc<SurfaceTls>,
    /// Plaintext callers are refused whatever `verify_incoming` says.
    tls_only: bool,
    /// The config block, for messages (`tls.internal_rpc`).
    block: &'static str,
}

impl TlsPolicy {
    /// The server RPC port: plaintext still let in without `verify_incoming`.
    pub(crate) fn internal_rpc(tls: Arc<SurfaceTls>) -> Self {
        TlsPolicy {
            tls,
            tls_only: false,
            block: "tls.internal_rpc",
        }
    }

    /// A port that speaks only TLS, configured by `block`.
    pub(crate) fn tls_only(tls: Arc<SurfaceTls>, block: &'static str) -> Self {
        TlsPolicy {
            tls,
            tls_only: true,
            block,
        }
    }

    fn verify_incoming(&self) -> bool {
        self.tls.surface().verify_incoming
    }
    fn verify_server_hostname(&self) -> bool {
        self.tls.surface().verify_server_hostname
    }
}

/// Accepts connections on `listener` for the tonic server.
pub(crate) fn incoming(
    listener: TcpListener,
    limit: PerClient,
    tls: Option<TlsPolicy>,
) -> impl futures::Stream<Item = std::io::Result<RpcConn>> {
    let (ready, rx) = tokio::sync::mpsc::channel(READY_QUEUE);
    tokio::spawn(async move {
        let refused = Arc::new(RateLimitedLog::new());
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                // The server stopped taking connections.
                _ = ready.closed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "server RPC accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(slot) = limit.acquire(peer.ip()) else {
                limit.refused.warn("limits.rpc_max_conns_per_client", peer);
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (ready, tls, refused) = (ready.clone(), tls.clone(), refused.clone());
            tokio::spawn(async move {
                let conn = tokio::time::timeout(HANDSHAKE_TIMEOUT, admit(tcp, slot, tls)).await;
                match conn {
                    Ok(Ok(conn)) => {
                        let _ = ready.send(Ok(conn)).await;
                    }
                    Ok(Err(why)) => refused.warn_with(&why, peer),
                    Err(_) => refused.warn_with("no TLS handshake in time", peer),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Takes one connection through TLS (when configured) and decides what
/// the caller may do.
async fn admit(tcp: TcpStream, slot: Slot, tls: Option<TlsPolicy>) -> Result<RpcConn, String> {
    let remote = tcp.peer_addr().ok();
    let Some(policy) = tls else {
        return Ok(RpcConn {
            io: Box::new(tcp),
            _slot: slot,
            peer: RpcPeer {
                remote,
                may_replicate: true,
                may_forward: true,
                identity: "plaintext (no TLS configured)".into(),
            },
        });
    };
    let mut first = [0u8; 1];
    let n = tcp.peek(&mut first).await.map_err(|e| e.to_string())?;
    if n == 0 || first[0] != TLS_HANDSHAKE {
        if policy.tls_only {
            return Err(format!(
                "plaintext refused: this port takes TLS ({})",
                policy.block
            ));
        }
        if policy.verify_incoming() {
            return Err(format!(
                "plaintext refused: {}.verify_incoming requires TLS",
                policy.block
            ));
        }
        return Ok(RpcConn {
            io: Box::new(tcp),
            _slot: slot,
            peer: RpcPeer {
                remote,
                may_replicate: !policy.verify_server_hostname(),
                may_forward: true,
                identity: "no certificate (plaintext)".into(),
            },
        });
    }
    let Some(config) = policy.tls.current().server.clone() else {
        return Err(format!(
            "TLS refused: no {}.cert_file to serve with",
            policy.block
        ));
    };
    let stream = tokio_rustls::TlsAcceptor::from(config)
        .accept(tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let server_name = policy.tls.current().server_name.clone();
    let cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec());
    let (identity, is_server) = match &cert {
        Some(der) if mesh_tls::certificate_names(der, &server_name) => (server_name, true),
        Some(_) => (
            "a certificate from the CA without the server name".into(),
            false,
        ),
        None => ("no certificate".into(), false),
    };
    Ok(RpcConn {
        io: Box::new(stream),
        _slot: slot,
        peer: RpcPeer {
            remote,
            // A caller without a certificate got through the handshake only
            // to ask for one (auto_encrypt), unless none is required.
            may_replicate: is_server
                || (!policy.verify_server_hostname()
                    && (cert.is_some() || !policy.verify_incoming())),
            may_forward: cert.is_some() || !policy.verify_incoming(),
            identity,
        },
    })
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// One admitted RPC connection: its stream, its per-client slot, and what
/// the caller proved.
pub(crate) struct RpcConn {
    io: Box<dyn Io>,
    _slot: Slot,
    peer: RpcPeer,
}

impl tonic::transport::server::Connected for RpcConn {
    type ConnectInfo = RpcPeer;
    fn connect_info(&self) -> RpcPeer {
        self.peer.clone()
    }
}

impl AsyncRead for RpcConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for RpcConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The agent's RPC TLS as the Raft network dials with it.
pub(crate) struct AgentRpcTls {
    pub tls: Arc<SurfaceTls>,
}

impl mesh_raft::RpcTls for AgentRpcTls {
    fn dial(&self) -> Option<Arc<rustls::ClientConfig>> {
        if self.tls.surface().verify_outgoing {
            self.tls.current().client.clone()
        } else {
            None
        }
    }
    fn proof(&self) -> Option<Arc<rustls::ClientConfig>> {
        let configs = self.tls.current();
        if self.tls.surface().verify_server_hostname {
            configs.strict_client.clone()
        } else {
            configs.client.clone()
        }
    }
    fn server_name(&self) -> String {
        self.tls.current().server_name.clone()
    }
}
