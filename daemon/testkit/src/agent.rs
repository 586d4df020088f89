//! One `mesh agent` child process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::mesh_bin;

/// How to start an agent.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub name: String,
    pub server: bool,
    pub bootstrap_expect: u32,
    pub retry_join: Vec<SocketAddr>,
    pub encrypt: Option<String>,
    /// Serve DNS (on a port-0 UDP+TCP port).
    pub dns: bool,
    /// Serve xDS (on a port-0 gRPC port).
    pub grpc: bool,
    pub extra: Vec<String>,
}

impl AgentSpec {
    /// A server expecting `expect` servers.
    pub fn server(name: &str, expect: u32) -> Self {
        AgentSpec {
            name: name.into(),
            server: true,
            bootstrap_expect: expect,
            retry_join: Vec::new(),
            encrypt: None,
            dns: false,
            grpc: false,
            extra: Vec::new(),
        }
    }

    /// A client agent.
    pub fn client(name: &str) -> Self {
        AgentSpec {
            server: false,
            bootstrap_expect: 0,
            ..AgentSpec::server(name, 0)
        }
    }
}

/// A running agent; killed on drop.
pub struct TestAgent {
    pub spec: AgentSpec,
    pub data_dir: PathBuf,
    pub http: SocketAddr,
    /// The HTTPS API, when the agent was configured with one.
    pub https: Option<SocketAddr>,
    pub rpc: Option<SocketAddr>,
    pub serf: SocketAddr,
    pub dns: Option<SocketAddr>,
    /// The xDS (gRPC) address, when the spec asked for one.
    pub grpc: Option<SocketAddr>,
    /// The xDS-over-TLS address, when the agent serves one.
    pub grpc_tls: Option<SocketAddr>,
    pub log: PathBuf,
    child: Option<Child>,
}

/// Addresses from the agent's ready line.
struct Ready {
    http: SocketAddr,
    https: Option<SocketAddr>,
    rpc: Option<SocketAddr>,
    serf: SocketAddr,
    dns: Option<SocketAddr>,
    grpc: Option<SocketAddr>,
    grpc_tls: Option<SocketAddr>,
}

fn parse_ready(line: &str) -> Option<Ready> {
    let rest = line.strip_prefix("==> mesh agent ready:")?;
    let field = |name: &str| {
        rest.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
    };
    Some(Ready {
        http: field("http")?,
        https: field("https"),
        rpc: field("rpc"),
        serf: field("serf_lan")?,
        dns: field("dns"),
        grpc: field("grpc"),
        grpc_tls: field("grpc_tls"),
    })
}

impl TestAgent {
    /// Start an agent on port 0 with its data in `data_dir`.
    pub async fn start(spec: AgentSpec, data_dir: &Path) -> anyhow::Result<TestAgent> {
        Self::launch(spec, data_dir, None).await
    }

    fn args(spec: &AgentSpec, data_dir: &Path, ports: Option<&Ready>) -> Vec<String> {
        let port = |p: Option<u16>| p.unwrap_or(0).to_string();
        let mut args = vec![
            "agent".to_string(),
            format!("-node={}", spec.name),
            format!("-data-dir={}", data_dir.display()),
            "-bind=127.0.0.1".into(),
            "-client=127.0.0.1".into(),
            format!("-http-port={}", port(ports.map(|r| r.http.port()))),
            format!("-serf-lan-port={}", port(ports.map(|r| r.serf.port()))),
            format!(
                "-server-port={}",
                port(ports.and_then(|r| r.rpc).map(|a| a.port()))
            ),
            format!(
                "-dns-port={}",
                match (spec.dns, ports.and_then(|r| r.dns)) {
                    (false, _) => "-1".to_string(),
                    (true, Some(a)) => a.port().to_string(),
                    (true, None) => "0".to_string(),
                }
            ),
            format!(
                "-grpc-port={}",
                match (spec.grpc, ports.and_then(|r| r.grpc)) {
                    (false, _) => "-1".to_string(),
                    (true, Some(a)) => a.port().to_string(),
                    (true, None) => "0".to_string(),
                }
            ),
            "-retry-interval=1s".into(),
        ];
        if spec.server {
            args.push("-server".into());
            args.push(format!("-bootstrap-expect={}", spec.bootstrap_expect));
        }
        for j in &spec.retry_join {
            args.push(format!("-retry-join={j}"));
        }
        if let Some(key) = &spec.encrypt {
            args.push(format!("-encrypt={key}"));
        }
        // A restart keeps the HTTPS and gRPC TLS ports it had (in place of
        // the spec's).
        let https = ports.and_then(|r| r.https);
        let grpc_tls = ports.and_then(|r| r.grpc_tls);
        args.extend(
            spec.extra
                .iter()
                .filter(|a| https.is_none() || !a.starts_with("-https-port"))
                .filter(|a| grpc_tls.is_none() || !a.starts_with("-grpc-tls-port"))
                .cloned(),
        );
        if let Some(https) = https {
            args.push(format!("-https-port={}", https.port()));
        }
        if let Some(grpc_tls) = grpc_tls {
            args.push(format!("-grpc-tls-port={}", grpc_tls.port()));
        }
        args
    }

    async fn launch(
        spec: AgentSpec,
        data_dir: &Path,
        ports: Option<Ready>,
    ) -> anyhow::Result<TestAgent> {
        std::fs::create_dir_all(data_dir)?;
        let log = data_dir.with_extension("log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut child = Command::new(mesh_bin())
            .args(Self::args(&spec, data_dir, ports.as_ref()))
            .env("RUST_LOG", "info,openraft=warn")
            .stdout(Stdio::piped())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .context("spawning mesh agent")?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(r) = parse_ready(&line) {
                    return Ok(r);
                }
            }
            bail!("agent exited before it was ready")
        })
        .await
        .map_err(|_| anyhow::anyhow!("agent {} not ready within 30s", spec.name))?;
        let ready = match ready {
            Ok(r) => r,
            Err(e) => {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: String = tail.lines().rev().take(20).collect::<Vec<_>>().join("\n");
                bail!("{e}; last log lines (newest first):\n{tail}");
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(TestAgent {
            spec,
            data_dir: data_dir.to_path_buf(),
            http: ready.http,
            https: ready.https,
            rpc: ready.rpc,
            serf: ready.serf,
            dns: ready.dns,
            grpc: ready.grpc,
            grpc_tls: ready.grpc_tls,
            log,
            child: Some(child),
        })
    }

    /// `http://ip:port` of the HTTP API.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// kill -9.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// The process ID, while it runs (to send it signals).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// Whether the process was started and not killed or waited for.
    pub fn is_alive(&self) -> bool {
        self.child.is_some()
    }

    /// Wait for the process to exit by itself (after a leave).
    pub async fn wait_exit(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let child = self.child.as_mut().context("not running")?;
        let status = tokio::time::timeout(timeout, child.wait()).await??;
        self.child = None;
        Ok(status)
    }

    /// Start again with the same data dir and the same ports.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill().await;
        let ports = Ready {
            http: self.http,
            https: self.https,
            rpc: self.rpc,
            serf: self.serf,
            dns: self.dns,
            grpc: self.grpc,
            grpc_tls: self.grpc_tls,
        };
        let fresh = Self::launch(self.spec.clone(), &self.data_dir.clone(), Some(ports)).await?;
        *self = fresh;
        Ok(())
    }
}

impl TestAgent {
    /// Start again with the same data dir on fresh ports (all port 0), as
    /// after a config change of its ports or a move to another address.
    pub async fn restart_on_new_ports(&mut self) -> anyhow::Result<()> {
        self.kill().await;
        let fresh = Self::launch(self.spec.clone(), &self.data_dir.clone(), None).await?;
        *self = fresh;
        Ok(())
    }
}

/// Kill and reap the process before the data dir goes away: an agent still
/// writing while its temp dir is removed makes the removal fail and leaks it.
impl Drop for TestAgent {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = child.start_kill();
        for _ in 0..500 {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line() {
        let r = parse_ready("==> mesh agent ready: node=a dc=dc1 server=true http=127.0.0.1:1 rpc=127.0.0.1:2 serf_lan=127.0.0.1:3").unwrap();
        assert_eq!(r.http.port(), 1);
        assert_eq!(r.rpc.unwrap().port(), 2);
        assert_eq!(r.serf.port(), 3);
        let c = parse_ready("==> mesh agent ready: node=a dc=dc1 server=false http=127.0.0.1:1 rpc=- serf_lan=127.0.0.1:3").unwrap();
        assert!(c.rpc.is_none());
        assert!(parse_ready("other").is_none());
    }
}
