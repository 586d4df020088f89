//! Names outside our domains go to the configured recursors, each tried in
//! turn with a timeout. Forwards run as their own tasks, at most
//! `MAX_IN_FLIGHT` at once, so a slow upstream never holds up local answers;
//! past the limit the client gets SERVFAIL at once rather than a queue.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Message, MessageType, Metadata, ResponseCode};
use hickory_server::server::{Request, ResponseHandler};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Semaphore;

use crate::handler::response_edns;

/// Forwards in flight at once, across all clients.
const MAX_IN_FLIGHT: usize = 256;

/// Why a recursor gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    /// No reply within `recursor_timeout`.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The socket failed (unreachable, refused, reset).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The reply was not a DNS message.
    #[error("malformed reply: {0}")]
    Malformed(String),
}

/// Shared limit on concurrent forwards.
#[derive(Clone)]
pub(crate) struct Forwarder {
    slots: Arc<Semaphore>,
}

impl Forwarder {
    pub fn new() -> Forwarder {
        Forwarder {
            slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }

    /// Forward `request` in the background and answer through `reply`.
    /// False when too many forwards are in flight: the caller answers.
    pub fn spawn<R: ResponseHandler>(
        &self,
        request: &Request,
        reply: R,
        recursors: Vec<SocketAddr>,
        timeout: Duration,
    ) -> bool {
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            return false;
        };
        let raw = request.as_slice().to_vec();
        let (src, protocol) = (request.src(), request.protocol());
        tokio::spawn(async move {
            let _permit = permit;
            // It parsed once already; re-parse for an owned copy.
            let Ok(request) = Request::from_bytes(raw, src, protocol) else {
                return;
            };
            let tcp = protocol == Protocol::Tcp;
            let upstream = exchange_any(&recursors, request.as_slice(), tcp, timeout).await;
            relay(&request, upstream, reply).await;
        });
        true
    }
}

/// Ask each recursor in turn; the first answer that is not SERVFAIL or
/// REFUSED wins, else the last answer, else the last error.
pub(crate) async fn exchange_any(
    recursors: &[SocketAddr],
    query: &[u8],
    tcp: bool,
    timeout: Duration,
) -> Result<Message, ForwardError> {
    let mut last = Err(ForwardError::Timeout(timeout));
    for server in recursors {
        let attempt = tokio::time::timeout(timeout, exchange(*server, query, tcp)).await;
        last = match attempt {
            Err(_) => Err(ForwardError::Timeout(timeout)),
            Ok(result) => result,
        };
        match &last {
            Ok(msg)
                if !matches!(
                    msg.metadata.response_code,
                    ResponseCode::ServFail | ResponseCode::Refused
                ) =>
            {
                return last;
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%server, %error, "dns: recursor failed"),
        }
    }
    last
}

async fn exchange(server: SocketAddr, query: &[u8], tcp: bool) -> Result<Message, ForwardError> {
    if query.len() < 12 {
        return Err(ForwardError::Malformed(
            "query shorter than a header".into(),
        ));
    }
    // A fresh ID on a fresh port: replies cannot be confused with another
    // client's, nor spoofed by guessing the client's ID.
    let id: u16 = rand::random();
    let mut query = query.to_vec();
    query[..2].copy_from_slice(&id.to_be_bytes());
    if tcp {
        let reply = tcp_exchange(server, &query).await?;
        parse_reply(&reply, id)?.ok_or_else(|| ForwardError::Malformed("reply ID mismatch".into()))
    } else {
        udp_exchange(server, &query, id).await
    }
}

async fn udp_exchange(server: SocketAddr, query: &[u8], id: u16) -> Result<Message, ForwardError> {
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(server).await?;
    socket.send(query).await?;
    let mut buf = vec![0; 65535];
    loop {
        let n = socket.recv(&mut buf).await?;
        // Stray or malformed datagrams are ignored until the timeout.
        if let Ok(Some(msg)) = parse_reply(&buf[..n], id) {
            return Ok(msg);
        }
    }
}

async fn tcp_exchange(server: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(server).await?;
    let len = u16::try_from(query.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await?;
    let mut reply = vec![0; usize::from(len)];
    stream.read_exact(&mut reply).await?;
    Ok(reply)
}

fn parse_reply(bytes: &[u8], id: u16) -> Result<Option<Message>, ForwardError> {
    let msg = Message::from_vec(bytes).map_err(|e| ForwardError::Malformed(e.to_string()))?;
    let ours = msg.metadata.id == id && msg.metadata.message_type == MessageType::Response;
    Ok(ours.then_some(msg))
}

/// Answer the client with the recursor's records under its own ID and
/// question, or SERVFAIL.
async fn relay<R: ResponseHandler>(
    request: &Request,
    upstream: Result<Message, ForwardError>,
    mut reply: R,
) {
    let edns = request.edns.as_ref().map(response_edns);
    let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.recursion_available = true;
    let result = match upstream {
        Ok(msg) => {
            metadata.response_code = msg.metadata.response_code;
            metadata.truncation = msg.metadata.truncation;
            metadata.authentic_data = msg.metadata.authentic_data;
            let response = builder.build(
                metadata,
                msg.answers.iter(),
                msg.authorities.iter(),
                std::iter::empty(),
                msg.additionals.iter(),
            );
            reply.send_response(response).await
        }
        Err(error) => {
            tracing::debug!(%error, "dns: every recursor failed; SERVFAIL");
            metadata.response_code = ResponseCode::ServFail;
            reply
                .send_response(builder.build_no_records(metadata))
                .await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "dns: could not send a forwarded answer");
    }
}
