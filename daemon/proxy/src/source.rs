//! Snapshot source: a Consul-style blocking-query client of the agent.
//!
//! What it expects of the agent endpoint
//! `GET {agent}/v1/agent/connect/proxy/{proxy_id}?index=N&wait=300s`
//! (header `X-Consul-Token` when a token is configured):
//!
//! - `200` with a [`ProxySnapshot`] JSON body and `X-Consul-Index: M`.
//!   With `index=0` it answers at once; otherwise it holds the request until
//!   the proxy's snapshot index passes N or `wait` (plus up to wait/16 jitter)
//!   elapses, then answers with the current snapshot either way.
//! - The client publishes a snapshot only when it differs from the last one, so
//!   a timed-out poll answering the same snapshot is harmless.
//! - An index lower than the one asked for means the agent reset (restart,
//!   snapshot restore): the snapshot is taken and the next poll uses index 0.
//!   A missing header falls back to the body's `Index`.
//! - Any non-2xx status (404 unknown proxy, 403 token, 5xx) or a transport
//!   error is retried with exponential backoff (100 ms doubling to 10 s, ±20 %
//!   jitter); the proxy keeps serving the last good snapshot meanwhile.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::snapshot::ProxySnapshot;
use crate::Error;

/// Where and how to poll the agent.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Agent base URL, e.g. `http://127.0.0.1:8500`.
    pub agent: String,
    /// The proxy service ID to fetch.
    pub proxy_id: String,
    /// ACL token sent as `X-Consul-Token`.
    pub token: Option<String>,
    /// Blocking-query wait (Consul's `wait`), e.g. 5 minutes.
    pub wait: Duration,
    /// First retry delay after an error.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// The HTTP client to poll with, e.g. one trusting an `https://`
    /// agent's CA; default: a new one with the system's roots.
    pub http: Option<reqwest::Client>,
}

impl SourceConfig {
    /// A config with Consul-like defaults (5 min wait, 100 ms–10 s backoff).
    pub fn new(agent: impl Into<String>, proxy_id: impl Into<String>) -> Self {
        Self {
            agent: agent.into().trim_end_matches('/').to_string(),
            proxy_id: proxy_id.into(),
            token: None,
            wait: Duration::from_secs(300),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            http: None,
        }
    }
}

/// Starts polling; the receiver starts with an empty snapshot (proxy not ready).
///
/// The task ends when every receiver has been dropped.
pub fn spawn(
    cfg: SourceConfig,
) -> (
    watch::Receiver<Arc<ProxySnapshot>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = watch::channel(Arc::new(ProxySnapshot::default()));
    let task = tokio::spawn(async move { run(cfg, tx).await });
    (rx, task)
}

/// Polls the agent forever, publishing each new snapshot on `tx`.
///
/// Returns when every receiver of `tx` has been dropped.
pub async fn run(cfg: SourceConfig, tx: watch::Sender<Arc<ProxySnapshot>>) {
    let client = match cfg.http.clone() {
        Some(c) => c,
        None => {
            // reqwest is built with rustls and no default crypto provider: use ring.
            let _ = rustls::crypto::ring::default_provider().install_default();
            match reqwest::Client::builder().build() {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot build HTTP client for the snapshot source");
                    return;
                }
            }
        }
    };
    let mut index = 0u64;
    let mut backoff = cfg.min_backoff;
    loop {
        let res = tokio::select! {
            _ = tx.closed() => return,
            res = fetch(&client, &cfg, index) => res,
        };
        match res {
            Ok((new_index, snap)) => {
                backoff = cfg.min_backoff;
                // Consul: an index that goes backwards means a reset; start over.
                index = if new_index < index {
                    0
                } else {
                    new_index.max(1)
                };
                let snap = Arc::new(snap);
                tx.send_if_modified(|cur| {
                    if **cur == *snap {
                        false
                    } else {
                        *cur = snap;
                        true
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "fetching proxy snapshot failed");
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(jitter(backoff)) => {}
                }
                backoff = (backoff * 2).min(cfg.max_backoff);
            }
        }
    }
}

/// One blocking query: the new index and the snapshot.
async fn fetch(
    client: &reqwest::Client,
    cfg: &SourceConfig,
    index: u64,
) -> Result<(u64, ProxySnapshot), Error> {
    let url = format!("{}/v1/agent/connect/proxy/{}", cfg.agent, cfg.proxy_id);
    let err = |message: String| Error::Agent {
        url: url.clone(),
        message,
    };
    let full = format!("{url}?index={index}&wait={}s", cfg.wait.as_secs().max(1));
    // The server may add up to wait/16 of jitter; allow for it.
    let mut req = client
        .get(&full)
        .timeout(cfg.wait + cfg.wait / 16 + Duration::from_secs(10));
    if let Some(t) = &cfg.token {
        req = req.header("X-Consul-Token", t);
    }
    let resp = req.send().await.map_err(|e| err(e.to_string()))?;
    let status = resp.status();
    let header_index = resp
        .headers()
        .get("X-Consul-Index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = resp.bytes().await.map_err(|e| err(e.to_string()))?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        return Err(err(format!("HTTP {status}: {}", text.trim())));
    }
    let snap = ProxySnapshot::from_json(&body).map_err(|e| err(e.to_string()))?;
    Ok((header_index.unwrap_or(snap.index), snap))
}

/// ±20 % jitter, without an RNG dependency.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let factor = 0.8 + (nanos % 400) as f64 / 1000.0;
    d.mul_f64(factor)
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod tests;
