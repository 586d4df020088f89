//! The TCP transport (RFC 7766): length-prefixed messages, answered in turn
//! on each connection. Connections are capped and idle ones closed, so a
//! flood of connections cannot grow memory without bound.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::net::xfer::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use crate::reply::Reply;
use crate::server::{DnsServer, Shutdown};

/// Connections served at once; more are closed on accept.
const MAX_CONNECTIONS: usize = 512;
/// A connection with no complete query for this long is closed.
pub(crate) const IDLE: Duration = Duration::from_secs(10);
/// Responses waiting for the writer; a client that does not read stalls its
/// own connection only.
const WRITE_QUEUE: usize = 8;

/// Accept and serve connections until shutdown.
pub(crate) async fn serve(
    listener: TcpListener,
    server: DnsServer,
    own_ip: Option<std::net::IpAddr>,
    mut shutdown: Shutdown,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of descriptors, or the peer reset before accept: the
                // listener itself is fine.
                Err(error) => {
                    tracing::debug!(%error, "dns: TCP accept failed");
                    tokio::task::yield_now().await;
                    continue;
                }
            },
            () = shutdown.wait() => break,
        };
        while connections.try_join_next().is_some() {}
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "dns: too many TCP connections; closing the newest");
            continue;
        };
        let local = server.local(own_ip);
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _permit = permit;
            if let Err(error) = connection(stream, peer, local, shutdown).await {
                tracing::debug!(%peer, %error, "dns: TCP connection ended");
            }
        });
    }
    connections.shutdown().await;
    Ok(())
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    mut local: crate::server::Local,
    mut shutdown: Shutdown,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let (mut reader, writer) = stream.into_split();
    let (tx, rx) = mpsc::channel(WRITE_QUEUE);
    let writing = tokio::spawn(write_responses(writer, rx));
    loop {
        let message = tokio::select! {
            read = tokio::time::timeout(IDLE, read_message(&mut reader)) => match read {
                Ok(Ok(Some(message))) => message,
                Ok(Ok(None)) | Err(_) => break,
                Ok(Err(error)) => {
                    drop(tx);
                    let _ = writing.await;
                    return Err(error);
                }
            },
            () = shutdown.wait() => break,
        };
        let reply = Reply::Tcp { tx: tx.clone() };
        local.handle(message, peer, Protocol::Tcp, reply).await;
    }
    // Let answers already produced (and forwards in flight) go out.
    drop(tx);
    writing.await.map_err(io::Error::other)?
}

/// One length-prefixed message; None at a clean end of stream.
async fn read_message(reader: &mut OwnedReadHalf) -> io::Result<Option<Vec<u8>>> {
    let len = match reader.read_u16().await {
        Ok(len) => usize::from(len),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut message = vec![0; len];
    reader.read_exact(&mut message).await?;
    Ok(Some(message))
}

async fn write_responses(
    writer: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Vec<u8>>,
) -> io::Result<()> {
    let mut writer = BufWriter::new(writer);
    while let Some(message) = rx.recv().await {
        let len = u16::try_from(message.len()).map_err(|_| io::ErrorKind::InvalidData)?;
        // A client that stops reading is cut off after IDLE.
        let write = async {
            writer.write_all(&len.to_be_bytes()).await?;
            writer.write_all(&message).await?;
            // Flush only when nothing else is ready, so pipelined answers
            // share a segment.
            if rx.is_empty() {
                writer.flush().await?;
            }
            io::Result::Ok(())
        };
        tokio::time::timeout(IDLE, write)
            .await
            .map_err(|_| io::ErrorKind::TimedOut)??;
    }
    writer.shutdown().await
}
