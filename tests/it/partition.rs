//! A real network partition: two network namespaces joined by a veth pair,
//! three agents (two on one side, one on the other), then iptables DROP in
//! one namespace. Each side sees the other fail; when the rule goes, the
//! pool heals (failed members are retried, as Serf reconnects them).

use std::process::{Command, Stdio};
use std::time::Duration;

use mesh_testkit::{eventually, mesh_bin};

use crate::sh;
use serde_json::Value;

/// Namespaces, veth and the agents inside them, removed on drop.
struct Net {
    dir: tempfile::TempDir,
    a: String,
    b: String,
    prefix: String,
    agents: Vec<std::process::Child>,
}

impl Net {
    fn new() -> Result<Net, String> {
        let id = std::process::id() % 10_000;
        let net = Net {
            dir: tempfile::tempdir().map_err(|e| e.to_string())?,
            a: format!("mesh{id}a"),
            b: format!("mesh{id}b"),
            prefix: format!("10.213.{}", id % 250),
            agents: Vec::new(),
        };
        let (va, vb) = (format!("mv{id}a"), format!("mv{id}b"));
        sh(&["ip", "netns", "add", &net.a])?;
        sh(&["ip", "netns", "add", &net.b])?;
        sh(&[
            "ip", "link", "add", &va, "type", "veth", "peer", "name", &vb,
        ])?;
        sh(&["ip", "link", "set", &va, "netns", &net.a])?;
        sh(&["ip", "link", "set", &vb, "netns", &net.b])?;
        for (ns, dev, host) in [(&net.a, &va, 1), (&net.b, &vb, 2)] {
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}.{host}/24", net.prefix),
                "dev",
                dev,
            ])?;
            sh(&["ip", "-n", ns, "link", "set", dev, "up"])?;
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn ip(&self, host: u8) -> String {
        format!("{}.{host}", self.prefix)
    }

    /// `mesh agent` inside `ns`: a client agent (gossip only), fixed ports (the namespace is ours).
    fn agent(
        &mut self,
        ns: &str,
        name: &str,
        ip: &str,
        serf: u16,
        http: u16,
        join: Option<String>,
    ) {
        let mut args = vec![
            "netns".to_string(),
            "exec".into(),
            ns.into(),
            mesh_bin().display().to_string(),
            "agent".into(),
            format!("-node={name}"),
            format!("-data-dir={}", self.dir.path().join(name).display()),
            format!("-bind={ip}"),
            format!("-client={ip}"),
            format!("-serf-lan-port={serf}"),
            format!("-http-port={http}"),
            "-dns-port=-1".into(),
            "-grpc-port=-1".into(),
            "-retry-interval=1s".into(),
        ];
        if let Some(j) = join {
            args.push(format!("-retry-join={j}"));
        }
        let child = Command::new("ip")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn agent in namespace");
        self.agents.push(child);
    }

    /// Member name → status, as the agent at `ip:http` in `ns` sees it.
    fn members(&self, ns: &str, ip: &str, http: u16) -> Option<Vec<(String, String)>> {
        let out = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(mesh_bin())
            .args([
                "members",
                "-format=json",
                &format!("-http-addr={ip}:{http}"),
            ])
            .output()
            .ok()?;
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        Some(
            v.as_array()?
                .iter()
                .map(|m| {
                    let status = match m["Status"].as_u64() {
                        Some(1) => "alive",
                        Some(3) => "left",
                        Some(4) => "failed",
                        _ => "other",
                    };
                    (
                        m["Name"].as_str().unwrap_or_default().to_string(),
                        status.to_string(),
                    )
                })
                .collect(),
        )
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in &mut self.agents {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = sh(&["ip", "netns", "del", &self.a]);
        let _ = sh(&["ip", "netns", "del", &self.b]);
    }
}

fn sees(list: &Option<Vec<(String, String)>>, name: &str, status: &str) -> bool {
    list.as_ref()
        .is_some_and(|l| l.iter().any(|(n, s)| n == name && s == status))
}

#[tokio::test]
async fn an_iptables_partition_between_namespaces_is_seen_and_heals() {
    let mut net =
        Net::new().expect("network namespaces (run as root; iproute2 from scripts/setup.sh)");
    let (a, b) = (net.a.clone(), net.b.clone());
    let (ip1, ip2) = (net.ip(1), net.ip(2));
    net.agent(&a, "a1", &ip1, 8301, 8500, None);
    net.agent(&a, "a2", &ip1, 8302, 8501, Some(format!("{ip1}:8301")));
    net.agent(&b, "b1", &ip2, 8301, 8500, Some(format!("{ip1}:8301")));
    let n = &net;
    eventually(
        "all three alive, seen from both sides",
        Duration::from_secs(30),
        || async {
            let left = n.members(&a, &ip1, 8500);
            let right = n.members(&b, &ip2, 8500);
            (["a1", "a2", "b1"]
                .iter()
                .all(|m| sees(&left, m, "alive") && sees(&right, m, "alive")))
            .then_some(())
        },
    )
    .await;

    sh(&[
        "ip",
        "netns",
        "exec",
        &b,
        "iptables",
        "-I",
        "INPUT",
        "-s",
        &format!("{ip1}/32"),
        "-j",
        "DROP",
    ])
    .expect("iptables in the namespace");
    eventually(
        "each side sees the other fail",
        Duration::from_secs(45),
        || async {
            let left = n.members(&a, &ip1, 8500);
            let right = n.members(&b, &ip2, 8500);
            (sees(&left, "b1", "failed")
                && sees(&left, "a2", "alive")
                && sees(&right, "a1", "failed")
                && sees(&right, "a2", "failed"))
            .then_some(())
        },
    )
    .await;

    sh(&[
        "ip",
        "netns",
        "exec",
        &b,
        "iptables",
        "-D",
        "INPUT",
        "-s",
        &format!("{ip1}/32"),
        "-j",
        "DROP",
    ])
    .unwrap();
    eventually("the pool heals", Duration::from_secs(90), || async {
        let left = n.members(&a, &ip1, 8500);
        let right = n.members(&b, &ip2, 8500);
        (["a1", "a2", "b1"]
            .iter()
            .all(|m| sees(&left, m, "alive") && sees(&right, m, "alive")))
        .then_some(())
    })
    .await;
}
