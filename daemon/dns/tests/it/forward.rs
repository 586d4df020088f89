//! Names outside our domains go to recursors, in order, with a timeout.

use std::time::{Duration, Instant};

use mesh_dns::DnsConfig;
use tokio::net::UdpSocket;

use crate::support::{have_dig, TestDns};

/// Another mesh DNS server, serving `upstream.`, stands in for a recursor.
async fn upstream() -> TestDns {
    let up = TestDns::start(DnsConfig {
        domain: "upstream.".into(),
        ..DnsConfig::default()
    })
    .await;
    up.node("far", "192.0.2.7", &[]);
    up
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_names_are_forwarded_over_udp_and_tcp() {
    if !have_dig() {
        return;
    }
    let up = upstream().await;
    let dns = TestDns::start(DnsConfig {
        recursors: vec![up.addr],
        ..DnsConfig::default()
    })
    .await;
    for transport in ["+notcp", "+tcp"] {
        let d = dns.dig(&[transport, "far.node.upstream", "A"]).await;
        assert_eq!(d.status, "NOERROR", "{transport}: {}", d.output);
        assert_eq!(d.data("A"), ["192.0.2.7"], "{transport}");
        assert!(d.has_flag("ra"), "{transport}: recursion is available");
        assert!(!d.has_flag("aa"), "{transport}: not our authority");
    }
    let d = dns.dig(&["nothing.node.upstream", "A"]).await;
    assert_eq!(
        d.status, "NXDOMAIN",
        "upstream's answer is relayed: {}",
        d.output
    );
    dns.stop().await;
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_recursor_times_out_and_the_next_one_answers() {
    if !have_dig() {
        return;
    }
    // Bound but never read: queries to it go unanswered.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let up = upstream().await;
    let timeout = Duration::from_millis(300);
    let dns = TestDns::start(DnsConfig {
        recursors: vec![silent.local_addr().unwrap()],
        recursor_timeout: timeout,
        ..DnsConfig::default()
    })
    .await;
    let started = Instant::now();
    let d = dns.dig(&["far.node.upstream", "A"]).await;
    assert_eq!(d.status, "SERVFAIL", "{}", d.output);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered after the timeout, not dig's"
    );

    dns.config
        .send_modify(|c| c.recursors = vec![silent.local_addr().unwrap(), up.addr]);
    let d = dns.dig(&["far.node.upstream", "A"]).await;
    assert_eq!(d.data("A"), ["192.0.2.7"], "{}", d.output);
    // Local names never wait for a recursor.
    let d = dns.dig(&["consul", "SOA"]).await;
    assert_eq!(d.status, "NOERROR");
    dns.stop().await;
    up.stop().await;
}
