//! Real sockets on 127.0.0.1: encryption and bind errors.

use std::net::SocketAddr;

use mesh_gossip::{generate_key, Gossip, GossipError, Keyring, MemberStatus};

use crate::support::*;

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn udp_node(name: &str, key: Option<&str>) -> Gossip {
    let mut cfg = config(name, loopback());
    cfg.keyring = key.map(|k| Keyring::from_base64(k).unwrap());
    Gossip::start(cfg).await.unwrap()
}

#[tokio::test]
async fn encrypted_pool_rejects_other_keys() {
    init_tracing();
    let key = generate_key();
    let a = udp_node("a", Some(&key)).await;
    let b = udp_node("b", Some(&key)).await;
    let c = udp_node("c", Some(&key)).await;
    assert_ne!(a.local_addr().port(), 0);
    let seed = a.local_addr();
    b.join(&[seed]).await.unwrap();
    c.join(&[seed]).await.unwrap();
    let pool = [&a, &b, &c];
    eventually("three encrypted members to see each other", || async {
        ["a", "b", "c"]
            .iter()
            .find_map(|name| all_see(&pool, name, MemberStatus::Alive))
    })
    .await;

    // A different key: the join fails and says why.
    let intruder = udp_node("intruder", Some(&generate_key())).await;
    let err = intruder.join(&[seed]).await.unwrap_err();
    assert!(matches!(err, GossipError::Join(_)));
    let msg = err.to_string();
    assert!(
        msg.contains("key mismatch") && msg.contains(&seed.to_string()),
        "{msg}"
    );

    // No key at all: same.
    let plain = udp_node("plain", None).await;
    let msg = plain.join(&[seed]).await.unwrap_err().to_string();
    assert!(msg.contains("key mismatch"), "{msg}");

    // A correctly keyed latecomer (with a secondary key installed) gets in; by the
    // time everyone sees it, any leak of the intruders would have shown up too.
    let mut ring = Keyring::from_base64(&key).unwrap();
    ring.add_key(vec![9; 16]).unwrap();
    let mut cfg = config("d", loopback());
    cfg.keyring = Some(ring);
    let d = Gossip::start(cfg).await.unwrap();
    d.join(&[b.local_addr()]).await.unwrap();
    let pool = [&a, &b, &c, &d];
    eventually("the latecomer to be seen by all", || async {
        all_see(&pool, "d", MemberStatus::Alive)
    })
    .await;
    for node in pool {
        let names: Vec<_> = node.members().into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
    }
    assert_eq!(intruder.members().len(), 1, "the intruder learned nothing");

    for node in [&a, &b, &c, &d, &intruder, &plain] {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn port_in_use_names_the_address() {
    init_tracing();
    let first = udp_node("first", None).await;
    let taken = first.local_addr();
    let err = Gossip::start(config("second", taken)).await.unwrap_err();
    assert!(matches!(err, GossipError::Bind { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&taken.to_string()), "{msg}");
    first.shutdown().await;

    // Shutdown released both sockets.
    let again = Gossip::start(config("second", taken)).await.unwrap();
    assert_eq!(again.local_addr(), taken);
    again.shutdown().await;
}

#[tokio::test]
async fn unspecified_bind_needs_advertise() {
    let mut cfg = config("x", "0.0.0.0:0".parse().unwrap());
    let err = Gossip::start(cfg.clone()).await.unwrap_err().to_string();
    assert!(err.contains("advertise"), "{err}");
    cfg.advertise = Some("127.0.0.1:0".parse().unwrap());
    let node = Gossip::start(cfg).await.unwrap();
    let me = &node.members()[0];
    assert_eq!(me.addr.ip().to_string(), "127.0.0.1");
    assert_eq!(me.addr.port(), node.local_addr().port());
    node.shutdown().await;
}
