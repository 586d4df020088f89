//! Packets dig will not send: malformed, oversized, unsupported, foreign,
//! and floods. Each is answered correctly or ignored, and the server keeps
//! serving.

use std::net::SocketAddr;
use std::time::Duration;

use mesh_dns::DnsConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::names::populated;
use crate::support::{have_dig, TestDns};

const FORMERR: u8 = 1;
const SERVFAIL: u8 = 2;
const NXDOMAIN: u8 = 3;
const NOTIMP: u8 = 4;
const REFUSED: u8 = 5;

/// A query in wire format: header, then one question per name.
fn query(id: u16, opcode: u8, names: &[&str], qtype: u16, qclass: u16) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    out.push(opcode << 3 | 1); // RD
    out.push(0);
    out.extend_from_slice(&(names.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    for name in names {
        for label in name.split('.').filter(|l| !l.is_empty()) {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&qclass.to_be_bytes());
    }
    out
}

fn rcode(reply: &[u8]) -> u8 {
    reply[3] & 0x0f
}

/// Send a datagram until a reply comes (as resolvers retransmit; the kernel
/// may drop a datagram when the socket buffer is full), for at most 10 s.
async fn exchange(server: SocketAddr, packet: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = vec![0; 65535];
    for _ in 0..20 {
        socket.send_to(packet, server).await.unwrap();
        let wait = Duration::from_millis(500);
        if let Ok(Ok(n)) = tokio::time::timeout(wait, socket.recv(&mut buf)).await {
            return Some(buf[..n].to_vec());
        }
    }
    None
}

/// Send a datagram that must go unanswered; waits one second for a reply.
async fn silence(server: SocketAddr, packet: &[u8]) -> bool {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(packet, server).await.unwrap();
    let mut buf = vec![0; 65535];
    let wait = Duration::from_secs(1);
    tokio::time::timeout(wait, socket.recv(&mut buf))
        .await
        .is_err()
}

async fn still_serving(dns: &TestDns) {
    let reply = exchange(dns.addr, &query(7, 0, &["web.service.consul"], 1, 1))
        .await
        .expect("the server still answers");
    assert_eq!((reply[0], reply[1], rcode(&reply)), (0, 7, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unsupported_queries_over_udp() {
    let dns = populated(DnsConfig::default()).await;
    let web = query(0x1234, 0, &["web.service.consul"], 1, 1);

    // Too short for a header, or an answer rather than a question: silence.
    assert!(silence(dns.addr, &[1, 2, 3, 4, 5]).await);
    let mut answer = web.clone();
    answer[2] |= 0x80;
    assert!(silence(dns.addr, &answer).await);

    // A header that promises a question it lacks; a pointer loop; a label
    // running past the end: FORMERR with the client's ID.
    let mut cases = vec![web[..12].to_vec()];
    let mut looped = web[..12].to_vec();
    looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    cases.push(looped);
    let mut overrun = web[..12].to_vec();
    overrun.extend_from_slice(&[63, b'a', b'b']);
    cases.push(overrun);
    for (i, packet) in cases.iter().enumerate() {
        let reply = exchange(dns.addr, packet)
            .await
            .expect("FORMERR, not silence");
        assert_eq!((reply[0], reply[1]), (0x12, 0x34), "case {i}");
        assert_eq!(rcode(&reply), FORMERR, "case {i}");
    }

    let two = query(1, 0, &["web.service.consul", "api.service.consul"], 1, 1);
    assert_eq!(rcode(&exchange(dns.addr, &two).await.unwrap()), FORMERR);
    let none = query(1, 0, &[], 1, 1);
    assert_eq!(rcode(&exchange(dns.addr, &none).await.unwrap()), FORMERR);
    for opcode in [2, 4, 5] {
        let q = query(1, opcode, &["web.service.consul"], 1, 1);
        assert_eq!(
            rcode(&exchange(dns.addr, &q).await.unwrap()),
            NOTIMP,
            "opcode {opcode}"
        );
    }
    let chaos = query(1, 0, &["version.bind"], 16, 3);
    assert_eq!(rcode(&exchange(dns.addr, &chaos).await.unwrap()), REFUSED);
    let axfr = query(1, 0, &["consul"], 252, 1);
    assert_eq!(rcode(&exchange(dns.addr, &axfr).await.unwrap()), REFUSED);
    let foreign = query(1, 0, &["example.com"], 1, 1);
    assert_eq!(rcode(&exchange(dns.addr, &foreign).await.unwrap()), REFUSED);
    let unknown_type = query(1, 0, &["web.service.consul"], 65400, 1);
    assert_eq!(rcode(&exchange(dns.addr, &unknown_type).await.unwrap()), 0);

    // The longest legal name in our zone, and one past the limit.
    let label = "a".repeat(63);
    let longest = format!("{label}.{label}.{label}.{}.service.consul", "b".repeat(46));
    assert_eq!(longest.len() + 2, 255);
    let reply = exchange(dns.addr, &query(1, 0, &[&longest], 1, 1))
        .await
        .unwrap();
    assert_eq!(rcode(&reply), NXDOMAIN);
    let too_long = format!("{label}.{label}.{label}.{label}.service.consul");
    let reply = exchange(dns.addr, &query(1, 0, &[&too_long], 1, 1))
        .await
        .unwrap();
    assert_eq!(rcode(&reply), FORMERR);

    still_serving(&dns).await;
    dns.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_garbage_never_stops_the_server() {
    let dns = populated(DnsConfig::default()).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // A fixed xorshift stream: reproducible without a dependency.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let base = query(9, 0, &["web.service.consul"], 33, 1);
    for _ in 0..3000 {
        let mut packet = base.clone();
        let len = (next() % 80) as usize;
        packet.resize(len.max(1), 0);
        for _ in 0..(next() % 6) {
            let at = (next() as usize) % packet.len();
            packet[at] = next() as u8;
        }
        socket.send_to(&packet, dns.addr).await.unwrap();
    }
    still_serving(&dns).await;
    dns.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_survives_garbage_and_answers_pipelined_queries() {
    let dns = populated(DnsConfig::default()).await;
    // A length prefix with a junk body, then a hang-up mid-message.
    let mut junk = TcpStream::connect(dns.addr).await.unwrap();
    junk.write_all(&[0, 3, 1, 2, 3, 0, 200, 1]).await.unwrap();
    drop(junk);

    // Two queries in one write: two answers, matched by ID.
    let mut conn = TcpStream::connect(dns.addr).await.unwrap();
    let mut both = Vec::new();
    for (id, name) in [(1u16, "big.service.consul"), (2, "nope.service.consul")] {
        let q = query(id, 0, &[name], 1, 1);
        both.extend_from_slice(&(q.len() as u16).to_be_bytes());
        both.extend_from_slice(&q);
    }
    conn.write_all(&both).await.unwrap();
    let mut rcodes = Vec::new();
    for _ in 0..2 {
        let read = async {
            let len = conn.read_u16().await?;
            let mut reply = vec![0; len as usize];
            conn.read_exact(&mut reply).await?;
            std::io::Result::Ok(reply)
        };
        let reply = tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .unwrap()
            .unwrap();
        let id = u16::from_be_bytes([reply[0], reply[1]]);
        let answers = u16::from_be_bytes([reply[6], reply[7]]);
        rcodes.push((id, rcode(&reply), answers));
    }
    rcodes.sort();
    // Over TCP the UDP limit does not apply: all ten of `big`.
    assert_eq!(rcodes, [(1, 0, 10), (2, NXDOMAIN, 0)]);
    still_serving(&dns).await;
    dns.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_shed_and_new_queries_are_still_answered() {
    let dns = populated(DnsConfig {
        recursors: vec!["127.0.0.1:9".parse().unwrap()],
        recursor_timeout: Duration::from_millis(200),
        ..DnsConfig::default()
    })
    .await;
    // A client that sends and never reads: 30,000 local queries and 2,000
    // that would need a (dead) recursor.
    let flood = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..32_000u32 {
        let name = if i % 16 == 0 {
            "example.com"
        } else {
            "web.service.consul"
        };
        let q = query(i as u16, 0, &[name], 1, 1);
        flood.send_to(&q, dns.addr).await.unwrap();
    }
    still_serving(&dns).await;
    // Forwards beyond the in-flight cap are answered SERVFAIL at once;
    // within it, after the dead recursor fails.
    let reply = exchange(dns.addr, &query(3, 0, &["example.com"], 1, 1)).await;
    assert_eq!(rcode(&reply.expect("SERVFAIL, not silence")), SERVFAIL);
    if have_dig() {
        assert_eq!(dns.dig(&["web.service.consul"]).await.data("A").len(), 2);
    }
    dns.stop().await;
}
