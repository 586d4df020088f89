//! What each proxy's xDS streams have been sent, and what Envoy said of it:
//! the last version sent, accepted (ACK) and rejected (NACK, with Envoy's
//! error detail) per resource type, for the agent's API.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;

/// The streams of every proxy on this agent.
#[derive(Default)]
pub struct Streams {
    proxies: Mutex<HashMap<String, ProxyStatus>>,
}

/// One proxy's xDS status, as the API shows it.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProxyStatus {
    /// Streams open now.
    pub streams: u32,
    /// `sotw` or `delta`, of the last stream opened.
    pub mode: String,
    /// The snapshot version last rendered.
    pub snapshot_index: u64,
    /// Per type URL.
    pub types: BTreeMap<String, TypeStatus>,
}

/// One resource type of one proxy.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TypeStatus {
    pub sent_version: String,
    pub acked_version: String,
    /// The last rejection, if the last answer was one.
    pub nack: Option<Nack>,
}

/// An Envoy rejection of a version.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Nack {
    pub version: String,
    /// Envoy's error detail, as it sent it.
    pub detail: String,
    /// Unix milliseconds.
    pub at_ms: u64,
}

/// What happened to one type on a stream.
pub enum TypeReport {
    Sent { version: String },
    Ack { version: String },
    Nack { version: String, detail: String },
}

/// Counts a stream as open until dropped.
pub struct OpenStream {
    streams: Arc<Streams>,
    proxy: String,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        let mut proxies = self.streams.proxies.lock();
        if let Some(p) = proxies.get_mut(&self.proxy) {
            p.streams = p.streams.saturating_sub(1);
            if p.streams == 0 && p.types.values().all(|t| t.nack.is_none()) {
                proxies.remove(&self.proxy);
            }
        }
    }
}

impl Streams {
    pub(crate) fn open(self: &Arc<Self>, proxy: &str, mode: &str) -> OpenStream {
        let mut proxies = self.proxies.lock();
        let p = proxies.entry(proxy.to_string()).or_default();
        p.streams += 1;
        p.mode = mode.to_string();
        OpenStream {
            streams: self.clone(),
            proxy: proxy.to_string(),
        }
    }

    pub(crate) fn snapshot(&self, proxy: &str, index: u64) {
        if let Some(p) = self.proxies.lock().get_mut(proxy) {
            p.snapshot_index = index;
        }
    }

    pub(crate) fn report(&self, proxy: &str, type_url: &str, report: TypeReport) {
        let mut proxies = self.proxies.lock();
        let Some(p) = proxies.get_mut(proxy) else {
            return;
        };
        let t = p.types.entry(type_url.to_string()).or_default();
        match report {
            TypeReport::Sent { version } => t.sent_version = version,
            TypeReport::Ack { version } => {
                t.acked_version = version;
                t.nack = None;
            }
            TypeReport::Nack { version, detail } => {
                let at_ms = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                t.nack = Some(Nack {
                    version,
                    detail,
                    at_ms,
                })
            }
        }
    }

    /// One proxy's status, if it has or had a stream.
    pub fn status(&self, proxy: &str) -> Option<ProxyStatus> {
        self.proxies.lock().get(proxy).cloned()
    }
}
