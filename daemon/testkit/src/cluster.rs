//! A cluster of real agents.

use std::time::Duration;

use tempfile::TempDir;

use crate::{eventually, AgentSpec, TestAgent};

/// N servers on loopback, joined and with an elected leader.
pub struct TestCluster {
    pub agents: Vec<TestAgent>,
    pub dir: TempDir,
    pub http: reqwest::Client,
}

impl TestCluster {
    /// Start `n` servers with `-bootstrap-expect=n` and wait for a leader
    /// that every server agrees on.
    pub async fn start(n: usize) -> anyhow::Result<TestCluster> {
        Self::start_with(n, |_, _| {}).await
    }

    /// `start`, with each server's spec adjusted by `customize(i, spec)` first.
    pub async fn start_with(
        n: usize,
        customize: impl Fn(usize, &mut AgentSpec),
    ) -> anyhow::Result<TestCluster> {
        let dir = tempfile::Builder::new().prefix("mesh-cluster-").tempdir()?;
        let mut agents = Vec::new();
        let mut spec = AgentSpec::server("s0", n as u32);
        customize(0, &mut spec);
        let first = TestAgent::start(spec, &dir.path().join("s0")).await?;
        let seed = first.serf;
        agents.push(first);
        for i in 1..n {
            let mut spec = AgentSpec::server(&format!("s{i}"), n as u32);
            customize(i, &mut spec);
            spec.retry_join = vec![seed];
            agents.push(TestAgent::start(spec, &dir.path().join(format!("s{i}"))).await?);
        }
        // reqwest is built with rustls and no default crypto provider: use ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cluster = TestCluster {
            agents,
            dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()?,
        };
        cluster.wait_for_leader(Duration::from_secs(30)).await;
        Ok(cluster)
    }

    /// Add an agent that joins this cluster.
    pub async fn add(&mut self, mut spec: AgentSpec) -> anyhow::Result<&mut TestAgent> {
        spec.retry_join = vec![self.agents[0].serf];
        let dir = self.dir.path().join(&spec.name);
        self.agents.push(TestAgent::start(spec, &dir).await?);
        Ok(self.agents.last_mut().expect("just pushed"))
    }

    /// The leader's RPC address as agent `i` reports it ("" if none).
    pub async fn leader_seen_by(&self, i: usize) -> Option<String> {
        let resp = self
            .http
            .get(self.agents[i].url("/v1/status/leader"))
            .send()
            .await
            .ok()?;
        resp.json::<String>().await.ok()
    }

    /// Wait until every running server names the same, non-empty leader; returns its index.
    pub async fn wait_for_leader(&self, timeout: Duration) -> usize {
        self.wait_for_leader_except(None, timeout).await
    }

    /// Like `wait_for_leader`, but the leader must not be agent `old`.
    pub async fn wait_for_new_leader(&self, old: usize, timeout: Duration) -> usize {
        self.wait_for_leader_except(Some(old), timeout).await
    }

    async fn wait_for_leader_except(&self, old: Option<usize>, timeout: Duration) -> usize {
        eventually("all servers agree on a leader", timeout, || async {
            let mut seen = None;
            for i in 0..self.agents.len() {
                if !self.agents[i].spec.server || !self.agents[i].is_alive() {
                    continue;
                }
                let l = self.leader_seen_by(i).await?;
                if l.is_empty() || seen.as_ref().is_some_and(|s| s != &l) {
                    return None;
                }
                seen = Some(l);
            }
            let leader = seen?;
            self.agents
                .iter()
                .position(|a| a.rpc.map(|r| r.to_string()) == Some(leader.clone()))
                .filter(|i| Some(*i) != old)
        })
        .await
    }
}

impl Drop for TestCluster {
    /// Stops every agent (each kill waits for its process) before the
    /// directory goes, and removes it with a few retries: a removal that
    /// races a file still being closed fails once and leaves the whole tree.
    fn drop(&mut self) {
        self.agents.clear();
        let path = self.dir.path().to_path_buf();
        let mut last = None;
        for _ in 0..20 {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(e) = last {
            eprintln!("testkit: could not remove {}: {e}", path.display());
        }
    }
}
