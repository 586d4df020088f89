//! Query options shared by read endpoints: blocking (`?index=&wait=`) and
//! consistency (`?stale`, `?consistent`), and the headers Consul returns.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue};
use mesh_raft::ReadMode;
use mesh_state::{State, Table};
use parking_lot::Mutex;
use rand::Rng;
use tokio::time::Instant;

use crate::{Api, ApiError};

/// Default and maximum blocking wait (Consul's).
const DEFAULT_WAIT: Duration = Duration::from_secs(5 * 60);
const MAX_WAIT: Duration = Duration::from_secs(10 * 60);

/// Parsed `?index=&wait=&stale&consistent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryOptions {
    pub index: u64,
    pub wait: Duration,
    pub mode: ReadMode,
}

impl QueryOptions {
    /// Parse from the query parameters; a bad value is a 400 naming it.
    pub fn parse(params: &HashMap<String, String>) -> Result<Self, ApiError> {
        let index = match params.get("index") {
            Some(v) if !v.is_empty() => v.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "Invalid index {v:?}: must be a non-negative integer"
                ))
            })?,
            _ => 0,
        };
        let wait = match params.get("wait") {
            Some(v) if !v.is_empty() => parse_duration(v)
                .map_err(|e| ApiError::bad_request(format!("Invalid wait time {v:?}: {e}")))?
                .min(MAX_WAIT),
            _ => DEFAULT_WAIT,
        };
        let stale = params.contains_key("stale");
        let consistent = params.contains_key("consistent");
        let mode = match (stale, consistent) {
            (true, true) => {
                return Err(ApiError::bad_request(
                    "Cannot specify ?stale with ?consistent, conflicting semantics.",
                ))
            }
            (true, false) => ReadMode::Stale,
            (false, true) => ReadMode::Consistent,
            (false, false) => ReadMode::Default,
        };
        Ok(QueryOptions { index, wait, mode })
    }
}

/// Parse a Go-style duration: `10s`, `5m`, `250ms`, `1h30m`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    mesh_types::parse_go_duration(text)
}

/// Answers of recent reads as sent, keyed by `Params::answer_key` and the
/// state version they were computed from. When one change wakes a thousand
/// blocking queries on the same service, the first renders the answer and
/// the rest send its bytes.
#[derive(Default)]
pub(crate) struct RenderCache {
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    entries: HashMap<String, Rendered>,
    bytes: usize,
}

#[derive(Clone)]
pub(crate) struct Rendered {
    pub version: u64,
    pub index: u64,
    pub body: Bytes,
}

/// Bounds on what the cache holds; past them it starts over (an entry is
/// only useful until the next write anyway). Bigger answers are not kept.
const RENDER_CACHE_ENTRIES: usize = 1024;
const RENDER_CACHE_BYTES: usize = 32 << 20;
const RENDER_CACHE_MAX_ANSWER: usize = 2 << 20;

impl RenderCache {
    /// The answer for `key` if it was rendered from state `version`.
    pub(crate) fn get(&self, key: &str, version: u64) -> Option<Rendered> {
        self.inner
            .lock()
            .entries
            .get(key)
            .filter(|r| r.version == version)
            .cloned()
    }

    pub(crate) fn put(&self, key: String, rendered: Rendered) {
        let size = key.len() + rendered.body.len();
        if size > RENDER_CACHE_MAX_ANSWER {
            return;
        }
        let mut inner = self.inner.lock();
        match inner.entries.get(&key) {
            // Never replace a newer answer with an older one.
            Some(old) if old.version > rendered.version => return,
            Some(old) => {
                let old_size = key.len() + old.body.len();
                inner.bytes -= old_size;
            }
            None if inner.entries.len() >= RENDER_CACHE_ENTRIES
                || inner.bytes + size > RENDER_CACHE_BYTES =>
            {
                inner.entries.clear();
                inner.bytes = 0;
            }
            None => {}
        }
        inner.bytes += size;
        inner.entries.insert(key, rendered);
    }
}

impl Api {
    /// Run a read with Consul's blocking semantics: pass the consistency
    /// barrier, then answer at once unless `?index` equals the current index,
    /// in which case wait (woken by state changes, never by polling) until it
    /// moves or `wait` (plus up to wait/16 jitter) passes.
    pub(crate) async fn blocking_read<T>(
        &self,
        opts: &QueryOptions,
        table: Table,
        read: impl Fn(&State) -> (T, u64),
    ) -> Result<(T, u64), ApiError> {
        self.blocking_read_versioned(opts, table, |s, _| read(s))
            .await
    }

    /// `blocking_read` whose read also gets the state's version (see
    /// `StateStore::read_versioned`).
    pub(crate) async fn blocking_read_versioned<T>(
        &self,
        opts: &QueryOptions,
        table: Table,
        read: impl Fn(&State, u64) -> (T, u64),
    ) -> Result<(T, u64), ApiError> {
        if let Some(raft) = &self.raft {
            raft.read_barrier(opts.mode).await?;
        }
        let jitter = if opts.index > 0 {
            let max = (opts.wait.as_millis() / 16) as u64;
            Duration::from_millis(rand::rng().random_range(0..=max))
        } else {
            Duration::ZERO
        };
        let deadline = Instant::now() + opts.wait + jitter;
        loop {
            let mut changed = self.state.hub().subscribe(table);
            let (value, index) = self.state.read_versioned(&read);
            // Any index other than the one the client saw means there is news
            // (a smaller one means the state was restored from a snapshot).
            if opts.index == 0 || index != opts.index || Instant::now() >= deadline {
                return Ok((value, index.max(1)));
            }
            tokio::select! {
                _ = changed.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    let (value, index) = self.state.read_versioned(&read);
                    return Ok((value, index.max(1)));
                }
            }
        }
    }

    /// Consul's response headers for a read at `index`.
    pub(crate) fn read_headers(&self, index: u64) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("X-Consul-Index", HeaderValue::from(index));
        let (known, contact) = match &self.raft {
            Some(raft) if raft.is_leader() => (true, 0),
            Some(raft) => (raft.leader().is_some(), 0),
            None => (false, 0),
        };
        headers.insert(
            "X-Consul-KnownLeader",
            HeaderValue::from_static(if known { "true" } else { "false" }),
        );
        headers.insert("X-Consul-LastContact", HeaderValue::from(contact as u64));
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(version: u64, body: &str) -> Rendered {
        Rendered {
            version,
            index: version * 10,
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn render_cache_serves_only_the_version_it_rendered() {
        let cache = RenderCache::default();
        cache.put("k".into(), answer(3, "three"));
        assert_eq!(cache.get("k", 3).unwrap().body, "three");
        assert!(
            cache.get("k", 4).is_none(),
            "a newer state is never served a stale answer"
        );
        assert!(cache.get("other", 3).is_none());
        cache.put("k".into(), answer(5, "five"));
        cache.put("k".into(), answer(4, "four")); // a slower reader of an older state
        assert_eq!(cache.get("k", 5).unwrap().body, "five");
        assert!(cache.get("k", 4).is_none());
    }

    #[test]
    fn render_cache_stays_within_its_bounds() {
        let cache = RenderCache::default();
        let big = "x".repeat(RENDER_CACHE_MAX_ANSWER + 1);
        cache.put("big".into(), answer(1, &big));
        assert!(
            cache.get("big", 1).is_none(),
            "oversized answers are not kept"
        );
        for i in 0..RENDER_CACHE_ENTRIES + 10 {
            cache.put(format!("k{i}"), answer(1, "v"));
        }
        let inner = cache.inner.lock();
        assert!(inner.entries.len() <= RENDER_CACHE_ENTRIES);
        let bytes: usize = inner
            .entries
            .iter()
            .map(|(k, r)| k.len() + r.body.len())
            .sum();
        assert_eq!(inner.bytes, bytes, "the byte count tracks the entries");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn query_options() {
        let p = |s: &[(&str, &str)]| {
            QueryOptions::parse(
                &s.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        let o = p(&[("index", "7"), ("wait", "1h")]).unwrap();
        assert_eq!((o.index, o.wait, o.mode), (7, MAX_WAIT, ReadMode::Default));
        assert_eq!(p(&[("stale", "")]).unwrap().mode, ReadMode::Stale);
        assert!(p(&[("index", "-1")]).is_err());
        assert!(p(&[("wait", "-3s")]).is_err());
        // Waits no clock can hold are capped or refused, never an overflow.
        assert_eq!(
            p(&[("wait", "18446744073709551615")]).unwrap().wait,
            MAX_WAIT
        );
        assert!(p(&[("wait", "99999999999999999999999h")]).is_err());
        assert_eq!(p(&[("wait", "2562047h")]).unwrap().wait, MAX_WAIT);
        assert!(p(&[("stale", ""), ("consistent", "")]).is_err());
    }
}
