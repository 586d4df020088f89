//! Pools on the in-memory network: convergence, failure detection, leave, tags, restart.

use std::collections::BTreeMap;
use std::time::Duration;

use mesh_gossip::mem::MemNetwork;
use mesh_gossip::{Gossip, MemberStatus, Role};

use crate::support::*;

async fn pool(net: &MemNetwork, n: u8) -> Vec<Gossip> {
    let mut nodes = Vec::new();
    for i in 0..n {
        nodes.push(mem_node(net, &format!("node-{i:02}"), i + 1).await);
    }
    let seed = nodes[0].local_addr();
    for node in &nodes[1..] {
        assert_eq!(node.join(&[seed]).await.unwrap(), 1);
    }
    eventually("every node to see the whole pool alive", || async {
        nodes.iter().find_map(|node| {
            let alive = alive_count(&node.members());
            (alive != n as usize)
                .then(|| format!("{} sees {alive} of {n} alive", node.local_addr()))
        })
    })
    .await;
    nodes
}

async fn shutdown(nodes: &[Gossip]) {
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn twenty_nodes_converge_detect_failure_and_admit_newcomer() {
    init_tracing();
    let net = MemNetwork::new();
    let mut nodes = pool(&net, 20).await;

    let members = nodes[5].members();
    assert_eq!(members.len(), 20);
    let seed = members.iter().find(|m| m.name == "node-00").unwrap();
    assert_eq!(seed.role, Role::Server);
    assert_eq!(seed.dc, "dc1");
    assert_eq!(seed.addr, nodes[0].local_addr());

    // Crash node-07: no leave, so the others must notice by probing.
    let dead = nodes.remove(7);
    dead.shutdown().await;
    let survivors: Vec<&Gossip> = nodes.iter().collect();
    eventually("all survivors to mark node-07 failed", || async {
        all_see(&survivors, "node-07", MemberStatus::Failed)
    })
    .await;
    eventually("survivors to count 19 alive", || async {
        survivors.iter().find_map(|n| {
            let alive = alive_count(&n.members());
            (alive != 19).then(|| format!("{} sees {alive} alive", n.local_addr()))
        })
    })
    .await;

    // A newcomer joins through the seed and everyone learns about it.
    let newcomer = mem_node(&net, "node-20", 21).await;
    newcomer.join(&[nodes[0].local_addr()]).await.unwrap();
    nodes.push(newcomer);
    let everyone: Vec<&Gossip> = nodes.iter().collect();
    eventually("everyone to see node-20 alive", || async {
        all_see(&everyone, "node-20", MemberStatus::Alive)
    })
    .await;
    // The newcomer learned the failure through push/pull, not by witnessing it.
    assert_eq!(status_of(&nodes[19], "node-07"), Some(MemberStatus::Failed));
    eventually("the newcomer to count 20 alive", || async {
        let alive = alive_count(&nodes[19].members());
        (alive != 20).then(|| format!("node-20 sees {alive} alive"))
    })
    .await;

    shutdown(&nodes).await;
}

#[tokio::test]
async fn graceful_leave_is_seen_as_left() {
    init_tracing();
    let net = MemNetwork::new();
    let nodes = pool(&net, 5).await;
    let mut changes = nodes[0].subscribe();

    nodes[3].leave(Duration::from_secs(10)).await.unwrap();
    assert_eq!(status_of(&nodes[3], "node-03"), Some(MemberStatus::Left));
    nodes[3].shutdown().await;

    let others = [&nodes[0], &nodes[1], &nodes[2], &nodes[4]];
    eventually("the others to see node-03 left", || async {
        all_see(&others, "node-03", MemberStatus::Left)
    })
    .await;
    assert!(changes.has_changed().unwrap(), "subscribers are notified");
    let _ = changes.borrow_and_update();

    // A node joining afterwards learns the leave via push/pull.
    let late = mem_node(&net, "node-05", 6).await;
    late.join(&[nodes[0].local_addr()]).await.unwrap();
    assert_eq!(status_of(&late, "node-03"), Some(MemberStatus::Left));

    // Left is final: probing never turns it into Failed.
    let seen_by_late = [&late, &nodes[1]];
    eventually("node-05 to be known alive", || async {
        all_see(&seen_by_late, "node-05", MemberStatus::Alive)
    })
    .await;
    assert_eq!(all_see(&others, "node-03", MemberStatus::Left), None);

    assert!(matches!(
        nodes[3].join(&[nodes[0].local_addr()]).await,
        Err(mesh_gossip::GossipError::Left | mesh_gossip::GossipError::Shutdown)
    ));
    shutdown(&nodes).await;
    late.shutdown().await;
}

#[tokio::test]
async fn tag_changes_and_restarts_propagate() {
    init_tracing();
    let net = MemNetwork::new();
    let mut nodes = pool(&net, 4).await;

    let tags = BTreeMap::from([("role".to_owned(), "web".to_owned())]);
    nodes[2].set_tags(tags.clone());
    eventually("everyone to see node-02's new tags", || async {
        nodes.iter().find_map(|n| {
            let m = n.members().into_iter().find(|m| m.name == "node-02")?;
            (m.tags != tags || m.status != MemberStatus::Alive)
                .then(|| format!("{} sees {m:?}", n.local_addr()))
        })
    })
    .await;

    // node-01 crashes and comes back under the same name on a new address.
    let old = nodes.remove(1);
    old.shutdown().await;
    let restarted = mem_node(&net, "node-01", 42).await;
    restarted.join(&[nodes[0].local_addr()]).await.unwrap();
    nodes.push(restarted);
    let new_addr = nodes[3].local_addr();
    eventually("everyone to accept the restarted node-01", || async {
        nodes.iter().find_map(|n| {
            let m = n.members().into_iter().find(|m| m.name == "node-01")?;
            (m.addr != new_addr || m.status != MemberStatus::Alive)
                .then(|| format!("{} sees {m:?}", n.local_addr()))
        })
    })
    .await;
    for n in &nodes {
        assert_eq!(n.members().len(), 4, "one entry per name");
    }
    shutdown(&nodes).await;
}

#[tokio::test]
async fn join_reports_unreachable_addresses() {
    init_tracing();
    let net = MemNetwork::new();
    let a = mem_node(&net, "a", 1).await;
    let nowhere = "10.9.9.9:8301".parse().unwrap();
    let err = a.join(&[nowhere]).await.unwrap_err().to_string();
    assert!(
        err.contains("10.9.9.9:8301") && err.contains("unreachable"),
        "{err}"
    );

    let b = mem_node(&net, "b", 2).await;
    // One good address is enough.
    assert_eq!(a.join(&[nowhere, b.local_addr()]).await.unwrap(), 1);
    a.shutdown().await;
    b.shutdown().await;
    assert!(matches!(
        a.join(&[b.local_addr()]).await,
        Err(mesh_gossip::GossipError::Shutdown)
    ));
}

#[tokio::test]
async fn partition_heals() {
    init_tracing();
    let net = MemNetwork::new();
    let nodes = pool(&net, 4).await;
    let island = &nodes[3];
    let mainland = [&nodes[0], &nodes[1], &nodes[2]];
    for node in mainland {
        net.cut(island.local_addr(), node.local_addr());
    }
    eventually("each side to see the other failed", || async {
        all_see(&mainland, "node-03", MemberStatus::Failed).or_else(|| {
            ["node-00", "node-01", "node-02"]
                .iter()
                .find_map(|name| all_see(&[island], name, MemberStatus::Failed))
        })
    })
    .await;

    for node in mainland {
        net.heal(island.local_addr(), node.local_addr());
    }
    let everyone: Vec<&Gossip> = nodes.iter().collect();
    eventually("the pool to be whole again", || async {
        ["node-00", "node-01", "node-02", "node-03"]
            .iter()
            .find_map(|name| all_see(&everyone, name, MemberStatus::Alive))
    })
    .await;
    shutdown(&nodes).await;
}

#[tokio::test]
async fn two_isolated_halves_reconnect_by_push_pull() {
    init_tracing();
    let net = MemNetwork::new();
    let nodes = pool(&net, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    net.cut(a.local_addr(), b.local_addr());
    eventually("each to see the other failed", || async {
        all_see(&[a], "node-01", MemberStatus::Failed)
            .or_else(|| all_see(&[b], "node-00", MemberStatus::Failed))
    })
    .await;
    // Both are now alone with no probes running; only the periodic push/pull
    // to failed members (Serf's reconnect) can bring them back together.
    net.heal(a.local_addr(), b.local_addr());
    eventually("both to be alive again", || async {
        all_see(&[a, b], "node-00", MemberStatus::Alive)
            .or_else(|| all_see(&[a, b], "node-01", MemberStatus::Alive))
    })
    .await;
    shutdown(&nodes).await;
}

#[tokio::test]
async fn force_leave_turns_a_failed_member_into_left_and_prune_forgets_it() {
    init_tracing();
    let net = MemNetwork::new();
    let mut nodes = pool(&net, 5).await;

    // A live member is refused: it would refute the leave.
    let refused = nodes[0].force_leave("node-04", false).await.unwrap_err();
    assert!(refused.to_string().contains("not failed"), "{refused}");
    let unknown = nodes[0].force_leave("node-99", false).await.unwrap_err();
    assert!(unknown.to_string().contains("no member named"), "{unknown}");

    let dead = nodes.remove(4);
    dead.shutdown().await;
    let dead_too = nodes.remove(3);
    dead_too.shutdown().await;
    let survivors: Vec<&Gossip> = nodes.iter().collect();
    for name in ["node-03", "node-04"] {
        eventually("the survivors to mark the crashed nodes failed", || async {
            all_see(&survivors, name, MemberStatus::Failed)
        })
        .await;
    }

    nodes[1].force_leave("node-04", false).await.unwrap();
    eventually("every survivor to see node-04 left", || async {
        all_see(&survivors, "node-04", MemberStatus::Left)
    })
    .await;

    nodes[2].force_leave("node-03", true).await.unwrap();
    eventually("every survivor to stop listing node-03", || async {
        survivors.iter().find_map(|n| {
            status_of(n, "node-03")
                .map(|s| format!("{} still lists node-03 as {s:?}", n.local_addr()))
        })
    })
    .await;
    // Prune leaves other members alone.
    assert_eq!(status_of(&nodes[0], "node-04"), Some(MemberStatus::Left));
    shutdown(&nodes).await;
}

/// Members that change identity at the same moment (servers tagging
/// themselves initialized) learn each other's new identity at once,
/// without waiting for a periodic push/pull, and never see each other
/// failed meanwhile.
#[tokio::test]
async fn simultaneous_identity_changes_converge_without_false_failures() {
    init_tracing();
    let net = MemNetwork::new();
    let mut nodes = Vec::new();
    for i in 0..3u8 {
        let bind: std::net::SocketAddr = format!("10.0.0.{}:8301", i + 1).parse().unwrap();
        let mut cfg = config(&format!("node-{i:02}"), bind);
        // Periodic push/pull would hide the bug: only the change itself may heal it.
        cfg.timing.push_pull_interval = Duration::from_secs(120);
        nodes.push(
            Gossip::start_with_transport(cfg, net.bind(bind).unwrap())
                .await
                .unwrap(),
        );
    }
    let seed = nodes[0].local_addr();
    for node in &nodes[1..] {
        node.join(&[seed]).await.unwrap();
    }
    let all: Vec<&Gossip> = nodes.iter().collect();
    for i in 0..3 {
        eventually("the pool alive", || async {
            all_see(&all, &format!("node-{i:02}"), MemberStatus::Alive)
        })
        .await;
    }
    // Watch for any member seen failed from now on.
    let failed_seen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for node in &nodes {
        let mut rx = node.subscribe();
        let flag = failed_seen.clone();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                if rx.borrow().iter().any(|m| m.status == MemberStatus::Failed) {
                    flag.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
        });
    }
    for node in &nodes {
        node.set_tags(BTreeMap::from([("init".to_string(), "1".to_string())]));
    }
    eventually("every member to see every new identity", || async {
        nodes.iter().find_map(|n| {
            let members = n.members();
            let stale: Vec<&str> = members
                .iter()
                .filter(|m| m.tags.get("init").map(String::as_str) != Some("1"))
                .map(|m| m.name.as_str())
                .collect();
            (!stale.is_empty()).then(|| format!("{} still has old {stale:?}", n.local_addr()))
        })
    })
    .await;
    assert!(
        !failed_seen.load(std::sync::atomic::Ordering::SeqCst),
        "a live member was seen failed"
    );
    shutdown(&nodes).await;
}

#[tokio::test]
async fn a_user_event_reaches_every_member_once_and_an_oversized_one_is_refused() {
    init_tracing();
    let net = MemNetwork::new();
    let nodes = pool(&net, 5).await;

    let fired = nodes[2]
        .fire_event(mesh_gossip::NewEvent {
            name: "deploy".into(),
            payload: b"v2".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(fired.ltime, 1);
    eventually("every member to record the event exactly once", || async {
        nodes.iter().enumerate().find_map(|(i, n)| {
            let seen: Vec<_> = n
                .events()
                .into_iter()
                .filter(|e| e.id == fired.id)
                .collect();
            (seen.len() != 1 || seen[0] != fired)
                .then(|| format!("node {i} has {} copies", seen.len()))
        })
    })
    .await;

    // A second event carries a later Lamport time than the first, on any member.
    let second = nodes[4]
        .fire_event(mesh_gossip::NewEvent {
            name: "deploy".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        second.ltime > fired.ltime,
        "{} after {}",
        second.ltime,
        fired.ltime
    );
    eventually("every member to list both events in order", || async {
        nodes.iter().enumerate().find_map(|(i, n)| {
            let ids: Vec<_> = n.events().into_iter().map(|e| e.id).collect();
            (ids != vec![fired.id, second.id]).then(|| format!("node {i} lists {ids:?}"))
        })
    })
    .await;

    let too_big = nodes[0]
        .fire_event(mesh_gossip::NewEvent {
            name: "big".into(),
            payload: vec![b'x'; mesh_gossip::MAX_EVENT_BYTES],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(too_big, mesh_gossip::GossipError::EventTooLarge(n) if n > mesh_gossip::MAX_EVENT_BYTES),
        "{too_big}"
    );
    assert!(nodes[0].events().iter().all(|e| e.name != "big"));
}

#[tokio::test]
async fn coordinates_learn_that_a_distant_member_is_farther() {
    let net = MemNetwork::new();
    let nodes = pool(&net, 3).await;
    // node-02 sits 20 ms away (one way) from both others; 00 and 01 are close.
    for near in &nodes[..2] {
        net.set_delay(
            near.local_addr(),
            nodes[2].local_addr(),
            Duration::from_millis(20),
        );
    }
    eventually(
        "node-00's coordinates to place node-02 far and node-01 near",
        || async {
            let own = nodes[0].coordinate();
            let peers = nodes[0].peer_coordinates();
            let (Some(near), Some(far)) = (peers.get("node-01"), peers.get("node-02")) else {
                return Some(format!(
                    "peers known: {:?}",
                    peers.keys().collect::<Vec<_>>()
                ));
            };
            let (near_ms, far_ms) = (own.distance(near) * 1e3, own.distance(far) * 1e3);
            // The true round trips are ~0 ms and 40 ms.
            (!(near_ms < 10.0 && (25.0..60.0).contains(&far_ms)))
                .then(|| format!("estimated node-01 {near_ms:.2} ms, node-02 {far_ms:.2} ms"))
        },
    )
    .await;
    // A member that leaves is forgotten.
    nodes[2].leave(Duration::from_secs(5)).await.unwrap();
    eventually("node-02's coordinate to be dropped", || async {
        let peers = nodes[0].peer_coordinates();
        peers
            .contains_key("node-02")
            .then(|| "still known".to_string())
    })
    .await;
}
