//! Real sockets on 127.0.0.1: encryption and bind errors.

use std::net::SocketAddr;

use mesh_gossip::{generate_key, Gossip, GossipError, KeyOp, Keyring, MemberStatus};

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

/// Watches `pool` until stopped; any member ever seen failed or suspect
/// is reported by name.
fn watch_for_failures(
    pool: &[&Gossip],
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Vec<String>>,
) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let pool: Vec<Gossip> = pool.iter().map(|g| (*g).clone()).collect();
    let task = tokio::spawn(async move {
        let mut seen = Vec::new();
        loop {
            for node in &pool {
                for m in node.members() {
                    if m.status != MemberStatus::Alive && !seen.contains(&m.name) {
                        seen.push(format!("{} ({:?})", m.name, m.status));
                    }
                }
            }
            tokio::select! {
                _ = &mut stopped => return seen,
                _ = tokio::time::sleep(std::time::Duration::from_millis(10)) => {}
            }
        }
    });
    (stop, task)
}

#[tokio::test]
async fn keys_rotate_across_the_pool_without_anyone_failing() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let k1 = generate_key();
    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        let mut cfg = config(name, loopback());
        cfg.keyring = Some(Keyring::from_base64(&k1).unwrap());
        cfg.keyring_file = Some(dir.path().join(format!("{name}.keyring")));
        nodes.push(Gossip::start(cfg).await.unwrap());
    }
    let seed = nodes[0].local_addr();
    for n in &nodes[1..] {
        n.join(&[seed]).await.unwrap();
    }
    let pool: Vec<&Gossip> = nodes.iter().collect();
    eventually("three members", || async {
        all_see(&pool, "c", MemberStatus::Alive)
    })
    .await;
    let (stop, watcher) = watch_for_failures(&pool);

    let k2 = generate_key();
    let keys_everywhere = |answers: &[mesh_gossip::NodeAnswer], want: &[&str]| {
        assert_eq!(answers.len(), 3, "{answers:?}");
        for a in answers {
            assert_eq!(a.answer.error, None, "{}", a.node);
            assert_eq!(a.answer.keys, want, "{}", a.node);
        }
    };
    let answers = nodes[1].key_op(KeyOp::Install(k2.clone())).await.unwrap();
    keys_everywhere(&answers, &[&k1, &k2]);
    let answers = nodes[2].key_op(KeyOp::Use(k2.clone())).await.unwrap();
    keys_everywhere(&answers, &[&k2, &k1]);
    // Gossip keeps flowing under the new primary for a few probe rounds.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let answers = nodes[0].key_op(KeyOp::Remove(k1.clone())).await.unwrap();
    keys_everywhere(&answers, &[&k2]);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let answers = nodes[0].key_op(KeyOp::List).await.unwrap();
    keys_everywhere(&answers, &[&k2]);
    stop.send(()).unwrap();
    let failures = watcher.await.unwrap();
    assert!(
        failures.is_empty(),
        "members failed during the rotation: {failures:?}"
    );

    // The keys persisted; an agent with the old key alone is now a stranger.
    let saved = mesh_gossip::load_keyring_file(&dir.path().join("b.keyring")).unwrap();
    assert_eq!(saved.keys().count(), 1);
    let stale = udp_node("stale", Some(&k1)).await;
    assert!(stale.join(&[seed]).await.is_err());
    for node in nodes.iter().chain([&stale]) {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn a_plaintext_pool_switches_to_encryption_in_place() {
    init_tracing();
    let nodes = [
        udp_node("a", None).await,
        udp_node("b", None).await,
        udp_node("c", None).await,
    ];
    let seed = nodes[0].local_addr();
    for n in &nodes[1..] {
        n.join(&[seed]).await.unwrap();
    }
    let pool: Vec<&Gossip> = nodes.iter().collect();
    eventually("three members", || async {
        all_see(&pool, "c", MemberStatus::Alive)
    })
    .await;
    let (stop, watcher) = watch_for_failures(&pool);
    let key = generate_key();
    // 1. Every node gets the key but still sends and accepts plaintext.
    for n in &nodes {
        n.set_verify(false, false).unwrap();
        assert!(n
            .enable_encryption(Keyring::from_base64(&key).unwrap())
            .unwrap());
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Keyring changes need an encrypted channel even now: the others refuse.
    let extra = generate_key();
    let answers = nodes[0]
        .key_op(KeyOp::Install(extra.clone()))
        .await
        .unwrap();
    assert_eq!(answers.len(), 3);
    for a in &answers[1..] {
        let error = a.answer.error.clone().unwrap_or_default();
        assert!(error.contains("not encrypted"), "{}: {error:?}", a.node);
    }
    // 2. Every node sends encrypted; all still accept both.
    for n in &nodes {
        n.set_verify(false, true).unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let answers = nodes[0]
        .key_op(KeyOp::Install(extra.clone()))
        .await
        .unwrap();
    assert!(
        answers.iter().all(|a| a.answer.error.is_none()),
        "{answers:?}"
    );
    // 3. Plaintext is refused.
    for n in &nodes {
        n.set_verify(true, true).unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    stop.send(()).unwrap();
    let failures = watcher.await.unwrap();
    assert!(
        failures.is_empty(),
        "members failed during the switch: {failures:?}"
    );
    let outsider = udp_node("outsider", None).await;
    let err = outsider.join(&[seed]).await.unwrap_err().to_string();
    assert!(err.contains("key mismatch"), "{err}");
    for node in nodes.iter().chain([&outsider]) {
        node.shutdown().await;
    }
}
