//! Background duties: joining the pool, bootstrapping Raft once, keeping
//! Raft membership in step with gossip (leader only), announcing readiness.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_config::LiveConfig;
use mesh_gossip::{Gossip, Member, MemberStatus, Role};
use mesh_raft::{MeshNode, RaftNode};
use mesh_state::StateStore;
use mesh_types::{CheckStatus, Command, HealthCheck, Node};
use tokio::net::lookup_host;
use tokio::sync::watch;

use crate::stop::Stop;
use crate::tags;
use crate::writes::Writes;

/// Join the addresses in `retry_join`, retrying until one answers.
pub(crate) async fn retry_join(
    gossip: Gossip,
    targets: Vec<String>,
    wait: Duration,
    mut stop: watch::Receiver<Stop>,
) -> anyhow::Result<()> {
    if targets.is_empty() {
        return Ok(());
    }
    loop {
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for target in &targets {
            let with_port = if target.contains(':') && !target.starts_with('[') {
                target.clone()
            } else {
                format!("{target}:8301")
            };
            let resolved = lookup_host(with_port).await;
            match resolved {
                Ok(found) => addrs.extend(found),
                Err(e) => tracing::warn!(%target, error = %e, "retry_join: cannot resolve"),
            }
        }
        match gossip.join(&addrs).await {
            Ok(n) => {
                tracing::info!(joined = n, "retry_join: joined the cluster");
                return Ok(());
            }
            Err(e) => tracing::warn!(error = %e, "retry_join: no agent answered; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s != Stop::Running) => return Ok(()),
        }
    }
}

/// A server as gossip announces it.
fn server_of(member: &Member, dc: &str) -> Option<(u64, MeshNode)> {
    if member.role != Role::Server || member.dc != dc {
        return None;
    }
    let id = member.tags.get(tags::RAFT_ID)?.parse().ok()?;
    let rpc = member.tags.get(tags::RPC)?.clone();
    Some((
        id,
        MeshNode {
            name: member.name.clone(),
            rpc_addr: rpc,
            http_addr: member.tags.get(tags::HTTP).cloned().unwrap_or_default(),
        },
    ))
}

/// What a server's own duties need: its Raft node, gossip (who the
/// servers are), the state, its way to write, the ACL settings.
pub(crate) struct ServerDuties {
    pub raft: RaftNode,
    pub gossip: Gossip,
    pub state: Arc<StateStore>,
    pub writes: Arc<Writes>,
    pub live: watch::Receiver<Arc<LiveConfig>>,
    pub shutdown: watch::Receiver<Stop>,
    pub node_name: String,
    pub datacenter: String,
    pub bootstrap_expect: usize,
    /// This server's Raft membership entry.
    pub me: Option<MeshNode>,
    /// `tls.internal_rpc` when the RPC port speaks TLS (for the start-up warning).
    pub rpc_tls: Option<mesh_config::TlsSurface>,
}

impl ServerDuties {
    /// Whether the server at `node` proves it is one (its RPC port presents
    /// a server certificate), before it gets a vote or the state. Without
    /// RPC TLS there is nothing to prove it with (warned at start). A
    /// failure is logged once per server until it succeeds.
    async fn proven(&self, node: &MeshNode, refused: &mut BTreeSet<String>) -> bool {
        match self.raft.network().prove_server(&node.rpc_addr).await {
            Ok(()) => {
                refused.remove(&node.name);
                true
            }
            Err(why) => {
                if refused.insert(node.name.clone()) {
                    tracing::warn!(server = %node, %why, "not admitting a server to raft: it did not prove it holds a server certificate");
                }
                false
            }
        }
    }

    /// Says at start how servers are admitted to Raft.
    fn warn_about_admission(&self, tls: Option<&mesh_config::TlsSurface>) {
        match tls {
            None => tracing::warn!(
                "tls.internal_rpc is not configured: servers join raft on gossip's word and raft traffic is plaintext; configure ca_file, cert_file, key_file with verify_incoming, verify_outgoing and verify_server_hostname"
            ),
            Some(t) if !t.verify_server_hostname || !t.verify_incoming => tracing::warn!(
                verify_incoming = t.verify_incoming,
                verify_server_hostname = t.verify_server_hostname,
                "without verify_incoming and verify_server_hostname any caller of the RPC port (or any certificate from the CA) can pass for a server"
            ),
            Some(_) => {}
        }
    }
}

/// With `bootstrap_expect = N`, wait until N servers (none of them part of
/// a cluster yet) see each other, then all initialise Raft with that same
/// set. A node with Raft state never bootstraps again.
pub(crate) async fn bootstrap(d: Arc<ServerDuties>) -> anyhow::Result<()> {
    let raft = d.raft.clone();
    let expect = d.bootstrap_expect;
    let mut members = d.gossip.subscribe();
    let mut stop = d.shutdown.clone();
    let mut refused = BTreeSet::new();
    if expect == 1 && !raft.is_initialized().await {
        // A single server needs no gossip round to know it is alone.
        if let Some(me) = d.me.clone() {
            raft.bootstrap(BTreeMap::from([(raft.id(), me)]))
                .await
                .map_err(|e| anyhow::anyhow!("raft bootstrap failed: {e}"))?;
        }
    }
    loop {
        if raft.is_initialized().await {
            mark_initialized(&d);
            return Ok(());
        }
        if expect > 0 {
            let view = members.borrow_and_update().clone();
            let alive: Vec<&Member> = view
                .iter()
                .filter(|m| m.status == MemberStatus::Alive)
                .collect();
            let joined_cluster_exists = alive.iter().any(|m| {
                m.role == Role::Server && m.tags.get(tags::INIT).map(String::as_str) == Some("1")
            });
            let servers: BTreeMap<u64, MeshNode> = alive
                .iter()
                .filter_map(|m| server_of(m, &d.datacenter))
                .collect();
            let mut all_proven = true;
            if !joined_cluster_exists && servers.len() == expect {
                for (id, node) in &servers {
                    if *id != raft.id() && !d.proven(node, &mut refused).await {
                        all_proven = false;
                    }
                }
            }
            if !joined_cluster_exists && servers.len() == expect && all_proven {
                tracing::info!(servers = ?servers.values().map(|n| &n.name).collect::<Vec<_>>(), "bootstrapping raft");
                match raft.bootstrap(servers).await {
                    Ok(true) => tracing::info!("raft bootstrapped"),
                    Ok(false) => tracing::info!("raft already initialised; not bootstrapping"),
                    Err(e) => tracing::error!(error = %e, "raft bootstrap failed"),
                }
                continue;
            } else if !joined_cluster_exists && servers.len() > expect {
                tracing::warn!(
                    seen = servers.len(),
                    expect,
                    "more servers than bootstrap_expect are present; not bootstrapping"
                );
            }
        }
        tokio::select! {
            _ = members.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.wait_for(|s| *s != Stop::Running) => return Ok(()),
        }
    }
}

fn mark_initialized(d: &ServerDuties) {
    let me = d
        .gossip
        .members()
        .into_iter()
        .find(|m| m.name == d.node_name);
    let mut local = me.map(|m| m.tags).unwrap_or_default();
    if local.get(tags::INIT).map(String::as_str) != Some("1") {
        local.insert(tags::INIT.into(), "1".into());
        d.gossip.set_tags(local);
    }
}

/// On the leader: servers that gossip shows alive become voters; servers
/// that left gracefully are removed. Failed servers stay voters (they may
/// come back), as Consul does without autopilot cleanup.
pub(crate) async fn membership(d: Arc<ServerDuties>) -> anyhow::Result<()> {
    let raft = d.raft.clone();
    let mut members = d.gossip.subscribe();
    let mut metrics = raft.raft().metrics();
    let mut stop = d.shutdown.clone();
    let mut refused = BTreeSet::new();
    d.warn_about_admission(d.rpc_tls.as_ref());
    loop {
        if raft.is_leader() {
            let view = members.borrow_and_update().clone();
            let (servers, _) = raft.servers();
            let known: BTreeSet<u64> = servers.iter().filter(|s| s.voter).map(|s| s.id).collect();
            for m in &view {
                let Some((id, node)) = server_of(m, &d.datacenter) else {
                    continue;
                };
                match m.status {
                    MemberStatus::Alive if !known.contains(&id) => {
                        if !d.proven(&node, &mut refused).await {
                            continue;
                        }
                        tracing::info!(server = %node, "adding server to raft as a voter");
                        if let Err(e) = raft.add_voter(id, node).await {
                            tracing::warn!(error = %e, "adding voter");
                        }
                    }
                    MemberStatus::Alive if servers.iter().any(|s| s.id == id && s.node != node) => {
                        if !d.proven(&node, &mut refused).await {
                            continue;
                        }
                        tracing::info!(server = %node, "server moved; updating its raft address");
                        if let Err(e) = raft.update_address(id, node).await {
                            tracing::warn!(error = %e, "updating a server's address");
                        }
                    }
                    MemberStatus::Left if servers.iter().any(|s| s.id == id) => {
                        // A leave said in gossip is not proof: a server
                        // that still answers as one stays.
                        if d.raft.network().has_tls()
                            && d.raft.network().prove_server(&node.rpc_addr).await.is_ok()
                        {
                            continue;
                        }
                        tracing::info!(server = %node, "server left; removing it from raft");
                        if let Err(e) = raft.remove_server(id).await {
                            tracing::warn!(error = %e, "removing server");
                        }
                    }
                    _ => {}
                }
            }
            if !servers.is_empty() {
                mark_initialized(&d);
            }
            let started = std::time::Instant::now();
            reconcile_catalog(&d, &view).await;
            mesh_telemetry::histogram!(mesh_telemetry::LEADER_RECONCILE)
                .record(mesh_telemetry::ms(started.elapsed()));
            store_initial_management(&d).await;
        } else if metrics
            .borrow_and_update()
            .membership_config
            .nodes()
            .next()
            .is_some()
        {
            mark_initialized(&d);
        }
        tokio::select! {
            _ = members.changed() => {}
            _ = metrics.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.wait_for(|s| *s != Stop::Running) => return Ok(()),
        }
    }
}

/// On the leader: a configured `initial_management` token is stored, so it
/// is listed, survives a config change, and closes `acl bootstrap`.
async fn store_initial_management(d: &ServerDuties) {
    let raft = &d.raft;
    let acl = d.live.borrow().acl.clone();
    let (Some(secret), true) = (acl.initial_management_token, acl.enabled) else {
        return;
    };
    let (stored, bootstrapped) = d.state.read(|s| {
        (
            s.acl_token_by_secret(&secret).is_some(),
            s.acl_bootstrap_index().is_some(),
        )
    });
    if stored {
        return;
    }
    let token = mesh_types::AclToken {
        accessor_id: uuid::Uuid::new_v4().to_string(),
        secret_id: secret,
        description: "Initial Management Token".into(),
        policies: vec![mesh_types::GLOBAL_MANAGEMENT_POLICY_ID.into()],
        create_time: mesh_ca::rfc3339(mesh_ca::unix_now()),
        ..Default::default()
    };
    let cmd = if bootstrapped {
        mesh_types::Command::AclTokenSet { token }
    } else {
        mesh_types::Command::AclBootstrap { token }
    };
    match raft.propose(&cmd).await {
        Ok((_, mesh_types::Outcome::Rejected(why))) => {
            tracing::warn!("storing the initial management token: {why}")
        }
        Ok(_) => tracing::info!("stored the initial management token"),
        Err(e) => tracing::warn!(error = %e, "storing the initial management token"),
    }
}

const SERF_CHECK: &str = "serfHealth";

/// On the leader: gossip membership drives the nodes table. Alive members
/// get a passing `serfHealth` check, failed ones a critical one (so their
/// services leave `?passing` answers), and members that left are removed.
async fn reconcile_catalog(d: &ServerDuties, members: &[Member]) {
    for m in members {
        let (node_exists, current) = d.state.read(|s| {
            let check = s
                .node_checks(&m.name)
                .find(|c| c.check_id == SERF_CHECK)
                .map(|c| c.status);
            (s.node(&m.name).is_some(), check)
        });
        let cmd = match m.status {
            MemberStatus::Left if node_exists => Command::NodeDeregister {
                node: m.name.clone(),
            },
            MemberStatus::Left => continue,
            status => {
                let (want, output) = if status == MemberStatus::Failed {
                    (CheckStatus::Critical, "Agent not live or unreachable")
                } else {
                    (CheckStatus::Passing, "Agent alive and reachable")
                };
                if current == Some(want) {
                    continue;
                }
                let address = m.addr.ip().to_string();
                Command::Register {
                    node: Node {
                        id: m.tags.get(tags::NODE_ID).cloned().unwrap_or_default(),
                        name: m.name.clone(),
                        address: address.clone(),
                        datacenter: m.dc.clone(),
                        tagged_addresses: BTreeMap::from([("lan".to_string(), address)]),
                        ..Default::default()
                    },
                    // A known node keeps what its own agent registered.
                    skip_node_update: node_exists,
                    service: None,
                    checks: vec![HealthCheck {
                        check_id: SERF_CHECK.into(),
                        name: "Serf Health Status".into(),
                        status: want,
                        output: output.into(),
                        check_type: "serf".into(),
                        ..Default::default()
                    }],
                    takeover: false,
                }
            }
        };
        if let Err(e) = d.writes.propose(&cmd).await {
            tracing::debug!(node = %m.name, error = %e, "catalog reconcile: will retry");
            return;
        }
    }
}
