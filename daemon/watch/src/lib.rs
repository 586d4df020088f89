//! Watches, as `consul watch` and the agent's `watches` blocks run them: a
//! blocking query on one view (a key, a prefix, the service list, the node
//! list, a service's instances, checks, events) and, on each change, a
//! handler that gets the view as JSON on stdin and its index in
//! `CONSUL_INDEX`.

#![forbid(unsafe_code)]

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use mesh_client::{Client, QueryOptions};
pub use mesh_types::watch::{WatchError, WatchKind, TYPES};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// How a watch reads its view.
trait Read {
    fn request(&self) -> (String, Vec<(&'static str, String)>);
    fn shape(&self, answer: Option<Value>) -> Value;
}

impl Read for WatchKind {
    /// The read this watch blocks on.
    fn request(&self) -> (String, Vec<(&'static str, String)>) {
        match self {
            WatchKind::Key { key } => (format!("kv/{key}"), vec![]),
            WatchKind::KeyPrefix { prefix } => {
                (format!("kv/{prefix}"), vec![("recurse", String::new())])
            }
            WatchKind::Services => ("catalog/services".into(), vec![]),
            WatchKind::Nodes => ("catalog/nodes".into(), vec![]),
            WatchKind::Service {
                service,
                tags,
                passing_only,
            } => {
                let mut q: Vec<(&'static str, String)> =
                    tags.iter().map(|t| ("tag", t.clone())).collect();
                if *passing_only {
                    q.push(("passing", String::new()));
                }
                (format!("health/service/{service}"), q)
            }
            WatchKind::Checks {
                service: Some(s), ..
            } => (format!("health/checks/{s}"), vec![]),
            WatchKind::Checks { state, .. } => (
                format!("health/state/{}", state.as_deref().unwrap_or("any")),
                vec![],
            ),
            WatchKind::Event { name } => (
                "event/list".into(),
                name.iter().map(|n| ("name", n.clone())).collect(),
            ),
        }
    }

    /// The view a handler gets: a key watch gets the entry (or null), a
    /// missing prefix an empty list, as Consul hands them.
    fn shape(&self, answer: Option<Value>) -> Value {
        match (self, answer) {
            (WatchKind::Key { .. }, Some(Value::Array(mut entries))) if !entries.is_empty() => {
                entries.swap_remove(0)
            }
            (WatchKind::Key { .. }, _) => Value::Null,
            (WatchKind::Services, None) => Value::Object(Default::default()),
            (_, Some(v)) => v,
            (_, None) => Value::Array(Vec::new()),
        }
    }
}

/// Consul's index of an event: the two halves of its UUID XORed.
fn event_index(event: &Value) -> Option<u64> {
    let id = uuid::Uuid::parse_str(event.get("ID")?.as_str()?).ok()?;
    let (hi, lo) = id.as_u64_pair();
    Some(hi ^ lo)
}

/// A running watch: each `next` returns the view once it changed.
pub struct Watch {
    client: Client,
    kind: WatchKind,
    /// The index to block on; `None` before the first read (or after a
    /// reset), when the read returns at once.
    index: Option<u64>,
    /// The longest one blocking read waits.
    wait: Option<Duration>,
}

/// The longest pause between retries after an error.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Watch {
    pub fn new(client: Client, kind: WatchKind) -> Self {
        Watch {
            client,
            kind,
            index: None,
            wait: None,
        }
    }

    /// Bounds each blocking read (the agent's default is 5 minutes).
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self
    }

    /// The view at the start, then after each change: its index and the
    /// JSON a handler gets. Errors are retried with backoff, up to
    /// `MAX_BACKOFF` between tries, and logged.
    pub async fn next(&mut self) -> (u64, Value) {
        let (path, query) = self.kind.request();
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut backoff = Duration::from_millis(500);
        loop {
            let opts = match self.index {
                Some(index) => QueryOptions::blocking(index, self.wait),
                None => QueryOptions::default(),
            };
            let is_event = matches!(self.kind, WatchKind::Event { .. });
            match self.client.get_json_blocking(&path, &query, &opts).await {
                Ok((answer, meta)) => {
                    if self.index == Some(meta.index) {
                        continue; // the wait ran out with nothing new
                    }
                    let previous = self.index.unwrap_or(0);
                    // Any other index is news, a lower one too (a restored
                    // snapshot): the view is handed over and the watch
                    // goes on from there.
                    self.index = Some(match meta.index {
                        // Index 0 would not block, except on an event
                        // list, whose index is a hash of its last event's
                        // ID (0: none yet) that the agent blocks on as given.
                        0 if !is_event => 1,
                        i => i,
                    });
                    let mut view = self.kind.shape(answer);
                    if let (WatchKind::Event { .. }, Value::Array(events)) = (&self.kind, &mut view)
                    {
                        // Only the events after the last one handed over.
                        if let Some(seen) =
                            events.iter().position(|e| event_index(e) == Some(previous))
                        {
                            events.drain(..=seen);
                        }
                    }
                    return (meta.index, view);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "watch: the read failed; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// What runs on each change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handler {
    /// A command line run by `sh -c` (Consul's default `-shell`).
    Shell(String),
    /// A program and its arguments, run directly (`args` in config).
    Args(Vec<String>),
}

/// Runs `handler` with `view` as JSON on stdin and `CONSUL_INDEX` set;
/// waits for it to exit.
pub async fn run_handler(
    handler: &Handler,
    index: u64,
    view: &Value,
) -> std::io::Result<ExitStatus> {
    let mut command = match handler {
        Handler::Shell(line) => {
            let mut c = tokio::process::Command::new("/bin/sh");
            c.arg("-c").arg(line);
            c
        }
        Handler::Args(args) => {
            let (program, rest) = args
                .split_first()
                .ok_or_else(|| std::io::Error::other("a handler needs a program"))?;
            let mut c = tokio::process::Command::new(program);
            c.args(rest);
            c
        }
    };
    let mut child = command
        .env("CONSUL_INDEX", index.to_string())
        .stdin(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut input = serde_json::to_vec(view).expect("a JSON value serializes");
    input.push(b'\n');
    if let Some(mut stdin) = child.stdin.take() {
        // A handler that does not read its input is not an error.
        let _ = stdin.write_all(&input).await;
    }
    child.wait().await
}

/// Runs a watch forever: the handler once at the start and after each change.
pub async fn run(mut watch: Watch, handler: Handler) {
    loop {
        let (index, view) = watch.next().await;
        match run_handler(&handler, index, &view).await {
            Ok(status) if status.success() => {}
            Ok(status) => tracing::warn!(%status, "watch handler failed"),
            Err(e) => tracing::warn!(error = %e, "watch handler could not run"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in pairs {
            m.entry(k.to_string()).or_default().push(v.to_string());
        }
        m
    }

    #[test]
    fn types_check_their_parameters() {
        assert_eq!(
            WatchKind::parse("key", &params(&[("key", "a/b")])).unwrap(),
            WatchKind::Key { key: "a/b".into() }
        );
        let e = WatchKind::parse("key", &params(&[])).unwrap_err();
        assert_eq!(e.to_string(), "a key watch needs key");
        let e = WatchKind::parse("services", &params(&[("key", "x")])).unwrap_err();
        assert_eq!(e.to_string(), "a services watch does not take \"key\"");
        let e = WatchKind::parse("checks", &params(&[("state", "bad")])).unwrap_err();
        assert!(e.to_string().contains("not one of any"), "{e}");
        let e = WatchKind::parse("nope", &params(&[])).unwrap_err();
        assert!(e.to_string().contains("unknown watch type"), "{e}");
        let service = WatchKind::parse(
            "service",
            &params(&[
                ("service", "web"),
                ("tag", "a"),
                ("tag", "b"),
                ("passingonly", "true"),
            ]),
        )
        .unwrap();
        let (path, query) = service.request();
        assert_eq!(path, "health/service/web");
        assert_eq!(
            query,
            vec![
                ("tag", "a".into()),
                ("tag", "b".into()),
                ("passing", String::new())
            ]
        );
    }

    #[test]
    fn a_key_view_is_the_entry_or_null() {
        let key = WatchKind::Key { key: "k".into() };
        let entry = serde_json::json!({"Key": "k", "Value": "dg=="});
        assert_eq!(key.shape(Some(Value::Array(vec![entry.clone()]))), entry);
        assert_eq!(key.shape(None), Value::Null);
        let prefix = WatchKind::KeyPrefix { prefix: "p".into() };
        assert_eq!(prefix.shape(None), Value::Array(vec![]));
    }

    #[test]
    fn event_index_is_the_xor_of_the_id_halves() {
        let event = serde_json::json!({"ID": "00000000-0000-0001-0000-000000000003"});
        assert_eq!(event_index(&event), Some(1 ^ 3));
    }
}
