//! Bytes on the wire: the encryption envelope, TCP frames and push/pull state.

use mesh_types::Coordinate;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::identity::NodeId;
use crate::Keyring;

/// First byte of every packet and frame.
const KIND_PLAIN: u8 = 0;
const KIND_SEALED: u8 = 1;
/// TCP only: the responder refuses the exchange and says why, in plaintext.
const KIND_ERROR: u8 = 2;
/// UDP only: a round-trip probe for network coordinates, not for foca.
/// Separate kinds (rather than a byte inside the envelope) so an older
/// member drops them as unknown instead of handing them to foca.
const KIND_RTT_PLAIN: u8 = 3;
const KIND_RTT_SEALED: u8 = 4;

/// Largest push/pull frame we read; a few MB covers tens of thousands of members.
const MAX_FRAME: usize = 16 << 20;

/// The message logged for packets we cannot read because keys differ.
pub(crate) const DECRYPT_FAILED: &str =
    "gossip decryption failed: the sender uses a different -encrypt key (or none)";

/// Why an incoming packet or frame could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// Encrypted, but none of our keys fit.
    Decrypt,
    /// We require encryption and the sender sent plaintext.
    Plaintext,
    /// The sender encrypts and we have no keyring.
    Sealed,
    /// The remote end refused the exchange (TCP only).
    Remote(String),
    /// Not one of our envelopes at all.
    Malformed,
}

/// Wraps `plain` in the envelope, encrypting if a keyring is set.
pub(crate) fn seal(keyring: Option<&Keyring>, plain: &[u8]) -> Vec<u8> {
    match keyring {
        Some(ring) => {
            let sealed = ring.encrypt(plain);
            let mut out = Vec::with_capacity(1 + sealed.len());
            out.push(KIND_SEALED);
            out.extend_from_slice(&sealed);
            out
        }
        None => {
            let mut out = Vec::with_capacity(1 + plain.len());
            out.push(KIND_PLAIN);
            out.extend_from_slice(plain);
            out
        }
    }
}

/// Unwraps the envelope, decrypting if a keyring is set. Plaintext is
/// refused when a keyring is set, unless `accept_plain` (the staged
/// switch to encryption, `encrypt_verify_incoming = false`).
pub(crate) fn open(
    keyring: Option<&Keyring>,
    accept_plain: bool,
    data: &[u8],
) -> Result<Vec<u8>, OpenError> {
    let (&kind, body) = data.split_first().ok_or(OpenError::Malformed)?;
    match (kind, keyring) {
        (KIND_SEALED, Some(ring)) => ring.decrypt(body).map_err(|_| OpenError::Decrypt),
        (KIND_SEALED, None) => Err(OpenError::Sealed),
        (KIND_PLAIN, Some(_)) if accept_plain => Ok(body.to_vec()),
        (KIND_PLAIN, Some(_)) => Err(OpenError::Plaintext),
        (KIND_PLAIN, None) => Ok(body.to_vec()),
        (KIND_ERROR, _) => Err(OpenError::Remote(
            String::from_utf8_lossy(body).into_owned(),
        )),
        _ => Err(OpenError::Malformed),
    }
}

/// Wraps a round-trip probe: the same envelope, marked as a probe.
pub(crate) fn seal_rtt(keyring: Option<&Keyring>, plain: &[u8]) -> Vec<u8> {
    let mut out = seal(keyring, plain);
    out[0] = if out[0] == KIND_SEALED {
        KIND_RTT_SEALED
    } else {
        KIND_RTT_PLAIN
    };
    out
}

/// Whether a packet is a round-trip probe; if so, its envelope with the
/// probe mark removed, for [`open`].
pub(crate) fn unmark_rtt(data: &[u8]) -> Option<Vec<u8>> {
    let kind = match *data.first()? {
        KIND_RTT_PLAIN => KIND_PLAIN,
        KIND_RTT_SEALED => KIND_SEALED,
        _ => return None,
    };
    let mut out = data.to_vec();
    out[0] = kind;
    Some(out)
}

/// A round-trip probe and its answer; each carries the sender's coordinate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum RttProbe {
    Ping { seq: u64, coord: Coordinate },
    Pong { seq: u64, coord: Coordinate },
}

impl RttProbe {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("encoding to a Vec cannot fail")
    }

    pub fn decode(bytes: &[u8]) -> Option<RttProbe> {
        postcard::from_bytes(bytes).ok()
    }
}

/// An error frame telling the other end why we refuse to talk.
pub(crate) fn error_frame(reason: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + reason.len());
    out.push(KIND_ERROR);
    out.extend_from_slice(reason.as_bytes());
    out
}

/// Full membership state exchanged over TCP on join and periodically.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PushPull {
    /// Every member the sender knows, itself included (as alive).
    pub members: Vec<foca::Member<NodeId>>,
    /// Identities known to have left gracefully.
    pub left: Vec<(String, u64)>,
}

impl PushPull {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("encoding to a Vec cannot fail")
    }

    pub fn decode(bytes: &[u8]) -> Result<PushPull, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// Writes one length-prefixed frame.
pub(crate) async fn write_frame<S: AsyncWrite + Unpin>(
    s: &mut S,
    body: &[u8],
) -> std::io::Result<()> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&l| l as usize <= MAX_FRAME)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too large"))?;
    s.write_all(&len.to_be_bytes()).await?;
    s.write_all(body).await?;
    s.flush().await
}

/// The first frame of a sealed message (its sealed length), or an error
/// frame, is at most this long.
const MAX_HEAD: usize = 1024;

/// Reads one length-prefixed frame of at most `max` bytes. A longer claim
/// is refused before anything is allocated; the body grows only as its
/// bytes arrive.
async fn read_bounded<S: AsyncRead + Unpin>(s: &mut S, max: usize) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("push/pull frame of {len} bytes exceeds the {max}-byte limit"),
        ));
    }
    let mut body = Vec::with_capacity(len.min(64 << 10));
    let got = s.take(len as u64).read_to_end(&mut body).await?;
    if got < len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("push/pull frame ended after {got} of {len} bytes"),
        ));
    }
    Ok(body)
}

/// Reads one length-prefixed frame.
#[cfg(test)]
pub(crate) async fn read_frame<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Vec<u8>> {
    read_bounded(s, MAX_FRAME).await
}

/// Sends `plain` as one message. With a keyring, a small sealed frame
/// holding the body's length goes first, so the receiver authenticates the
/// sender before it reads (and holds) a large body.
pub(crate) async fn send<S: AsyncWrite + Unpin>(
    s: &mut S,
    keyring: Option<&Keyring>,
    plain: &[u8],
) -> std::io::Result<()> {
    let body = seal(keyring, plain);
    if let Some(ring) = keyring {
        let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
        write_frame(s, &seal(Some(ring), &len.to_be_bytes())).await?;
    }
    write_frame(s, &body).await
}

/// Receives one message sent by [`send`] (or an error frame). The outer
/// error is the connection's; the inner one says why the message cannot
/// be opened.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) async fn receive<S: AsyncRead + Unpin>(
    s: &mut S,
    keyring: Option<&Keyring>,
) -> std::io::Result<Result<Vec<u8>, OpenError>> {
    Ok(receive_any(s, keyring, false).await?.map(|(body, _)| body))
}

/// [`receive`], letting plaintext in when `accept_plain`; says whether
/// the message was sealed.
pub(crate) async fn receive_any<S: AsyncRead + Unpin>(
    s: &mut S,
    keyring: Option<&Keyring>,
    accept_plain: bool,
) -> std::io::Result<Result<(Vec<u8>, bool), OpenError>> {
    let Some(ring) = keyring else {
        let frame = read_bounded(s, MAX_FRAME).await?;
        return Ok(open(None, false, &frame).map(|b| (b, false)));
    };
    // Only the first byte of an over-long head is read: enough to tell a
    // plaintext sender from garbage, and nothing is held for it.
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_HEAD {
        let mut kind = [0u8; 1];
        s.read_exact(&mut kind).await?;
        return Ok(match kind[0] {
            KIND_PLAIN if accept_plain && len <= MAX_FRAME => {
                let mut body = Vec::with_capacity((len - 1).min(64 << 10));
                let got = s.take(len as u64 - 1).read_to_end(&mut body).await?;
                if got < len - 1 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("push/pull frame ended after {got} of {len} bytes"),
                    ));
                }
                Ok((body, false))
            }
            KIND_PLAIN => Err(OpenError::Plaintext),
            _ => Err(OpenError::Malformed),
        });
    }
    let mut head = vec![0u8; len];
    s.read_exact(&mut head).await?;
    // A short plaintext message fits in one frame of its own.
    if head.first() == Some(&KIND_PLAIN) || head.first() == Some(&KIND_ERROR) {
        return Ok(open(Some(ring), accept_plain, &head).map(|b| (b, false)));
    }
    let body_len = match open(Some(ring), false, &head) {
        Ok(bytes) => match <[u8; 4]>::try_from(bytes.as_slice()) {
            Ok(b) => u32::from_be_bytes(b) as usize,
            Err(_) => return Ok(Err(OpenError::Malformed)),
        },
        Err(e) => return Ok(Err(e)),
    };
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    if u32::from_be_bytes(len) as usize != body_len || body_len > MAX_FRAME {
        return Ok(Err(OpenError::Malformed));
    }
    let mut body = Vec::with_capacity(body_len.min(64 << 10));
    let got = s.take(body_len as u64).read_to_end(&mut body).await?;
    if got < body_len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("push/pull frame ended after {got} of {body_len} bytes"),
        ));
    }
    Ok(open(Some(ring), false, &body).map(|b| (b, true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_and_reports_key_problems() {
        let a = Keyring::new(vec![1; 32]).unwrap();
        let b = Keyring::new(vec![2; 32]).unwrap();
        assert_eq!(open(None, false, &seal(None, b"hi")).unwrap(), b"hi");
        assert_eq!(
            open(Some(&a), false, &seal(Some(&a), b"hi")).unwrap(),
            b"hi"
        );
        assert_eq!(
            open(Some(&b), false, &seal(Some(&a), b"hi")),
            Err(OpenError::Decrypt)
        );
        assert_eq!(
            open(Some(&a), false, &seal(None, b"hi")),
            Err(OpenError::Plaintext)
        );
        assert_eq!(
            open(Some(&a), true, &seal(None, b"hi")).unwrap(),
            b"hi",
            "the staged switch lets plaintext in"
        );
        assert_eq!(
            open(None, false, &seal(Some(&a), b"hi")),
            Err(OpenError::Sealed)
        );
        assert_eq!(
            open(Some(&a), false, &error_frame("nope")),
            Err(OpenError::Remote("nope".into()))
        );
        assert_eq!(open(None, false, b""), Err(OpenError::Malformed));
        assert_eq!(open(None, false, b"\x09x"), Err(OpenError::Malformed));
    }

    #[tokio::test]
    async fn sealed_messages_are_authenticated_before_their_body_is_read() {
        let a = Keyring::new(vec![1; 32]).unwrap();
        let b = Keyring::new(vec![2; 32]).unwrap();
        let (mut tx, mut rx) = tokio::io::duplex(1 << 20);
        send(&mut tx, Some(&a), b"state").await.unwrap();
        assert_eq!(receive(&mut rx, Some(&a)).await.unwrap().unwrap(), b"state");
        // The wrong key: refused after the small head, the body never read.
        send(&mut tx, Some(&a), &vec![7u8; 100_000]).await.unwrap();
        assert_eq!(
            receive(&mut rx, Some(&b)).await.unwrap(),
            Err(OpenError::Decrypt)
        );
        // A stranger's claim of a huge frame costs us nothing.
        let (mut tx, mut rx) = tokio::io::duplex(64);
        tx.write_all(&(16u32 << 20).to_be_bytes()).await.unwrap();
        tx.write_all(&[KIND_SEALED]).await.unwrap();
        assert_eq!(
            receive(&mut rx, Some(&a)).await.unwrap(),
            Err(OpenError::Malformed)
        );
        // A plaintext sender is named as such.
        let (mut tx, mut rx) = tokio::io::duplex(1 << 20);
        send(&mut tx, None, &vec![1u8; 5000]).await.unwrap();
        assert_eq!(
            receive(&mut rx, Some(&a)).await.unwrap(),
            Err(OpenError::Plaintext)
        );
        // Unless the staged switch lets plaintext in, large or small.
        for size in [5000, 10] {
            let (mut tx, mut rx) = tokio::io::duplex(1 << 20);
            send(&mut tx, None, &vec![1u8; size]).await.unwrap();
            let (body, sealed) = receive_any(&mut rx, Some(&a), true).await.unwrap().unwrap();
            assert_eq!((body.len(), sealed), (size, false));
        }
        // And a sealed sender to a node without a key.
        let (mut tx, mut rx) = tokio::io::duplex(1 << 20);
        send(&mut tx, Some(&a), b"x").await.unwrap();
        assert_eq!(
            receive(&mut rx, None).await.unwrap(),
            Err(OpenError::Sealed)
        );
    }

    #[tokio::test]
    async fn frames_round_trip() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            write_frame(
                &mut a,
                b"hello world, longer than the pipe buffer of 64 bytes........",
            )
            .await
            .unwrap();
        });
        let got = read_frame(&mut b).await.unwrap();
        assert!(got.starts_with(b"hello world"));
        writer.await.unwrap();
    }
}
