//! Where a response goes: encoded within the transport's size limit and
//! sent on the UDP socket, or handed to a TCP connection's writer.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_server::net::NetError;
use hickory_server::proto::op::{Header, HeaderCounts, Metadata, ResponseCode};
use hickory_server::proto::rr::Record;
use hickory_server::proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_server::server::{ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// A response sink for one request.
#[derive(Clone)]
pub(crate) enum Reply {
    /// Back to `dst` on the socket the query came in on.
    Udp {
        socket: Arc<UdpSocket>,
        dst: SocketAddr,
    },
    /// To the connection's writer task, which frames it.
    Tcp { tx: mpsc::Sender<Vec<u8>> },
    /// Kept for the caller to inspect (tests, fuzzing).
    #[cfg(any(test, feature = "fuzzing"))]
    Capture {
        out: Arc<parking_lot::Mutex<Option<Vec<u8>>>>,
        udp: bool,
    },
}

impl Reply {
    /// Send an already encoded message.
    pub async fn send_bytes(&self, bytes: Vec<u8>) -> Result<(), NetError> {
        match self {
            Reply::Udp { socket, dst } => {
                // Usually there is room in the socket buffer: skip the
                // readiness dance.
                match socket.try_send_to(&bytes, *dst) {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => socket
                        .send_to(&bytes, *dst)
                        .await
                        .map(drop)
                        .map_err(Into::into),
                    Err(e) => Err(e.into()),
                }
            }
            Reply::Tcp { tx } => tx
                .send_timeout(bytes, crate::tcp::IDLE)
                .await
                .map_err(|_| NetError::from("TCP client is not reading its answers")),
            #[cfg(any(test, feature = "fuzzing"))]
            Reply::Capture { out, .. } => {
                *out.lock() = Some(bytes);
                Ok(())
            }
        }
    }
}

#[async_trait::async_trait]
impl ResponseHandler for Reply {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        // RFC 1035 4.2.1: 512 bytes over UDP unless EDNS says more; the
        // encoder sets TC itself when records do not fit.
        let max_size = match self {
            Reply::Udp { .. } => response.edns().map_or(512, |e| e.max_payload().max(512)),
            Reply::Tcp { .. } => u16::MAX,
            #[cfg(any(test, feature = "fuzzing"))]
            Reply::Capture { udp: true, .. } => {
                response.edns().map_or(512, |e| e.max_payload().max(512))
            }
            #[cfg(any(test, feature = "fuzzing"))]
            Reply::Capture { udp: false, .. } => u16::MAX,
        };
        let metadata = *response.metadata();
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max_size);
        let info = match response.destructive_emit(&mut encoder) {
            Ok(info) => info,
            Err(error) => {
                tracing::warn!(%error, "dns: could not encode a response; SERVFAIL");
                bytes.clear();
                let mut metadata = metadata;
                metadata.response_code = ResponseCode::ServFail;
                metadata.truncation = false;
                header_only(metadata, &mut bytes)?
            }
        };
        self.send_bytes(bytes).await?;
        Ok(info)
    }
}

/// A message that is only a header, with no records (FORMERR, SERVFAIL).
pub(crate) fn header_only(
    metadata: Metadata,
    bytes: &mut Vec<u8>,
) -> Result<ResponseInfo, NetError> {
    let header = Header {
        metadata,
        counts: HeaderCounts::default(),
    };
    header.emit(&mut BinEncoder::new(bytes))?;
    Ok(ResponseInfo::from(header))
}
