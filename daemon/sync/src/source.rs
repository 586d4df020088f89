//! Watching the catalog and KV with blocking queries, and rendering what is
//! there into the module variables of CTS's contract (`services`,
//! `catalog_services`, `consul_kv`).
//!
//! One watcher per distinct source, shared by every task that reads it; a
//! watcher stops when no task reads it any more.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use mesh_client::{Client, QueryOptions};
use serde_json::{json, Map, Value};
use tokio::sync::watch;

use crate::config::SourceSpec;

/// How long one blocking query waits for a change.
pub const BLOCKING_WAIT: Duration = Duration::from_secs(60);
/// Longest pause between retries when the agent cannot be reached.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(10);

/// The latest rendered value of a source; `None` until the first read.
pub type SourceRx = watch::Receiver<Option<Value>>;

/// The shared watchers.
pub struct Watchers {
    client: Client,
    running: Mutex<HashMap<SourceSpec, SourceRx>>,
}

impl Watchers {
    pub fn new(client: Client) -> Arc<Watchers> {
        Arc::new(Watchers {
            client,
            running: Mutex::new(HashMap::new()),
        })
    }

    /// A receiver for `spec`'s value, starting its watcher if none runs.
    pub fn subscribe(self: &Arc<Self>, spec: &SourceSpec) -> SourceRx {
        let mut running = self.running.lock().expect("watchers lock");
        if let Some(rx) = running.get(spec) {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        running.insert(spec.clone(), rx.clone());
        let this = Arc::clone(self);
        let spec = spec.clone();
        tokio::spawn(async move {
            match leaf_query(&spec) {
                Some(query) => this.run_leaf(&spec, query, tx).await,
                None => this.run_composite(&spec, tx).await,
            }
        });
        rx
    }

    /// True when only the registry's own receiver is left: the watcher
    /// removes itself (under the lock, so no subscriber can slip in).
    fn unwanted(&self, spec: &SourceSpec, tx: &watch::Sender<Option<Value>>) -> bool {
        let mut running = self.running.lock().expect("watchers lock");
        if tx.receiver_count() <= 1 {
            running.remove(spec);
            return true;
        }
        false
    }

    async fn run_leaf(
        &self,
        spec: &SourceSpec,
        query: LeafQuery,
        tx: watch::Sender<Option<Value>>,
    ) {
        let mut index = 0u64;
        let mut backoff = Duration::from_millis(250);
        loop {
            if self.unwanted(spec, &tx) {
                return;
            }
            let opts = QueryOptions::blocking(index, Some(BLOCKING_WAIT));
            let pairs: Vec<(&str, &str)> = query
                .query
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let read = tokio::time::timeout(
                BLOCKING_WAIT + Duration::from_secs(15),
                self.client.get_json_blocking(&query.path, &pairs, &opts),
            )
            .await;
            match read {
                Ok(Ok((body, meta))) => {
                    backoff = Duration::from_millis(250);
                    // Consul's rule: an index that goes backwards means start over.
                    let moved = meta.index != index;
                    index = if meta.index < index { 0 } else { meta.index };
                    let rendered = render(spec, body.unwrap_or(Value::Null));
                    // A new index is passed on even when the rendered data is
                    // the same: the task's input hash decides (and counts it).
                    tx.send_if_modified(|old| {
                        if old.as_ref() == Some(&rendered) && !moved {
                            return false;
                        }
                        *old = Some(rendered);
                        true
                    });
                }
                Ok(Err(e)) => {
                    tracing::warn!(source = %query.path, error = %e, "mesh sync: reading the catalog failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_RETRY_BACKOFF);
                }
                Err(_) => {
                    tracing::warn!(source = %query.path, "mesh sync: a blocking read timed out; retrying");
                }
            }
        }
    }

    /// Several services (`names`) or a `regexp`: one leaf watcher per
    /// service, merged.
    async fn run_composite(self: &Arc<Self>, spec: &SourceSpec, tx: watch::Sender<Option<Value>>) {
        let SourceSpec::Services {
            names,
            regexp,
            filter,
            datacenter,
            user_meta,
        } = spec
        else {
            unreachable!("only services sources are composite")
        };
        let leaf = |name: &str| SourceSpec::Services {
            names: vec![name.to_string()],
            regexp: None,
            filter: filter.clone(),
            datacenter: datacenter.clone(),
            user_meta: user_meta.clone(),
        };
        let pattern = regexp
            .as_ref()
            .map(|r| regex::Regex::new(r).expect("checked when the config was loaded"));
        let mut catalog = pattern.as_ref().map(|_| {
            self.subscribe(&SourceSpec::CatalogServices {
                regexp: regexp.clone(),
                datacenter: datacenter.clone(),
                node_meta: BTreeMap::new(),
            })
        });
        let mut parts: BTreeMap<String, SourceRx> = BTreeMap::new();
        if catalog.is_none() {
            for name in names {
                parts.insert(name.clone(), self.subscribe(&leaf(name)));
            }
        }
        loop {
            if let Some(cat) = &catalog {
                let wanted: Vec<String> = match &*cat.borrow() {
                    Some(Value::Object(map)) => map.keys().cloned().collect(),
                    _ => Vec::new(),
                };
                parts.retain(|name, _| wanted.contains(name));
                for name in wanted {
                    if let std::collections::btree_map::Entry::Vacant(slot) = parts.entry(name) {
                        let rx = self.subscribe(&leaf(slot.key()));
                        slot.insert(rx);
                    }
                }
            }
            // Publish once every part has been read at least once.
            let ready = catalog.as_ref().is_none_or(|c| c.borrow().is_some())
                && parts.values().all(|rx| rx.borrow().is_some());
            if ready {
                let mut merged = Map::new();
                for rx in parts.values() {
                    if let Some(Value::Object(m)) = &*rx.borrow() {
                        merged.extend(m.clone());
                    }
                }
                tx.send_replace(Some(Value::Object(merged)));
            }
            if self.unwanted(spec, &tx) {
                return;
            }
            let mut waits: Vec<_> = parts
                .values_mut()
                .map(|rx| Box::pin(rx.changed()))
                .collect();
            let any_part = async {
                if waits.is_empty() {
                    std::future::pending::<()>().await;
                }
                let _ = futures::future::select_all(waits.iter_mut()).await;
            };
            let cat_changed = async {
                match catalog.as_mut() {
                    Some(c) => {
                        let _ = c.changed().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = any_part => {}
                _ = cat_changed => {}
                // Wake now and then to notice that no task reads this any more.
                _ = tokio::time::sleep(BLOCKING_WAIT) => {}
            }
        }
    }
}

/// One HTTP path and its query for a source that maps to one endpoint.
struct LeafQuery {
    path: String,
    query: Vec<(String, String)>,
}

fn leaf_query(spec: &SourceSpec) -> Option<LeafQuery> {
    let mut query = Vec::new();
    let dc = |q: &mut Vec<(String, String)>, d: &Option<String>| {
        if let Some(d) = d {
            q.push(("dc".into(), d.clone()));
        }
    };
    match spec {
        SourceSpec::Services {
            names,
            regexp: None,
            filter,
            datacenter,
            ..
        } if names.len() == 1 => {
            query.push(("passing".into(), "true".into()));
            if let Some(f) = filter {
                query.push(("filter".into(), f.clone()));
            }
            dc(&mut query, datacenter);
            Some(LeafQuery {
                path: format!("health/service/{}", names[0]),
                query,
            })
        }
        SourceSpec::Services { .. } => None,
        SourceSpec::CatalogServices {
            datacenter,
            node_meta,
            ..
        } => {
            dc(&mut query, datacenter);
            for (k, v) in node_meta {
                query.push(("node-meta".into(), format!("{k}:{v}")));
            }
            Some(LeafQuery {
                path: "catalog/services".into(),
                query,
            })
        }
        SourceSpec::Kv {
            path,
            recurse,
            datacenter,
        } => {
            if *recurse {
                query.push(("recurse".into(), "true".into()));
            }
            dc(&mut query, datacenter);
            Some(LeafQuery {
                path: format!("kv/{path}"),
                query,
            })
        }
    }
}

/// The module variable's value for a source's HTTP answer.
pub fn render(spec: &SourceSpec, body: Value) -> Value {
    match spec {
        SourceSpec::Services { user_meta, .. } => render_services(&body, user_meta),
        SourceSpec::CatalogServices { regexp, .. } => {
            let pattern = regexp.as_ref().and_then(|r| regex::Regex::new(r).ok());
            let mut out = Map::new();
            if let Value::Object(map) = body {
                for (name, tags) in map {
                    if pattern.as_ref().is_none_or(|p| p.is_match(&name)) {
                        let tags = if tags.is_array() { tags } else { json!([]) };
                        out.insert(name, tags);
                    }
                }
            }
            Value::Object(out)
        }
        SourceSpec::Kv { .. } => {
            let mut out = Map::new();
            if let Value::Array(entries) = body {
                for e in entries {
                    let Some(key) = e.get("Key").and_then(Value::as_str) else {
                        continue;
                    };
                    let value = e
                        .get("Value")
                        .and_then(Value::as_str)
                        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    out.insert(key.to_string(), Value::String(value));
                }
            }
            Value::Object(out)
        }
    }
}

fn str_of(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A map of strings (meta, tagged addresses); anything else becomes `{}`.
fn string_map(v: Option<&Value>) -> Value {
    let mut out = Map::new();
    if let Some(Value::Object(m)) = v {
        for (k, v) in m {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            out.insert(k.clone(), Value::String(s));
        }
    }
    Value::Object(out)
}

/// `/v1/health/service/<name>` entries → CTS's `services` map, keyed
/// `<id>.<node>.<datacenter>`.
fn render_services(body: &Value, user_meta: &BTreeMap<String, String>) -> Value {
    let mut out = Map::new();
    let Value::Array(entries) = body else {
        return Value::Object(out);
    };
    for entry in entries {
        let node = entry.get("Node").cloned().unwrap_or(Value::Null);
        let svc = entry.get("Service").cloned().unwrap_or(Value::Null);
        let status = aggregate_status(entry.get("Checks"));
        let node_name = str_of(&node, "Node");
        let dc = str_of(&node, "Datacenter");
        let id = str_of(&svc, "ID");
        let mut address = str_of(&svc, "Address");
        if address.is_empty() {
            address = str_of(&node, "Address");
        }
        let tags = svc
            .get("Tags")
            .filter(|t| t.is_array())
            .cloned()
            .unwrap_or_else(|| json!([]));
        let instance = json!({
            "id": id,
            "name": str_of(&svc, "Service"),
            "kind": str_of(&svc, "Kind"),
            "address": address,
            "port": svc.get("Port").and_then(Value::as_u64).unwrap_or(0),
            "meta": string_map(svc.get("Meta")),
            "tags": tags,
            "namespace": "",
            "status": status,
            "node": node_name,
            "node_id": str_of(&node, "ID"),
            "node_address": str_of(&node, "Address"),
            "node_datacenter": dc,
            "node_tagged_addresses": string_map(node.get("TaggedAddresses")),
            "node_meta": string_map(node.get("Meta")),
            "cts_user_defined_meta": user_meta,
        });
        out.insert(format!("{id}.{node_name}.{dc}"), instance);
    }
    Value::Object(out)
}

/// The worst check status of an instance: critical over warning over passing.
fn aggregate_status(checks: Option<&Value>) -> &'static str {
    let mut worst = "passing";
    if let Some(Value::Array(list)) = checks {
        for c in list {
            match c.get("Status").and_then(Value::as_str) {
                Some("critical") => return "critical",
                Some("warning") => worst = "warning",
                _ => {}
            }
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_render_in_the_cts_shape() {
        let body = json!([{
            "Node": {"ID": "n-1", "Node": "worker-01", "Address": "10.0.0.1", "Datacenter": "dc1",
                     "TaggedAddresses": {"lan": "10.0.0.1"}, "Meta": {"rack": "a"}},
            "Service": {"ID": "web-1", "Service": "web", "Address": "", "Port": 80, "Tags": ["v1"],
                        "Meta": {"n": 1}},
            "Checks": [{"Status": "passing"}, {"Status": "warning"}]
        }]);
        let meta = BTreeMap::from([("team".to_string(), "core".to_string())]);
        let out = render_services(&body, &meta);
        let web = &out["web-1.worker-01.dc1"];
        assert_eq!(
            web["address"], "10.0.0.1",
            "empty service address falls back to the node's"
        );
        assert_eq!(web["status"], "warning");
        assert_eq!(web["meta"]["n"], "1");
        assert_eq!(web["cts_user_defined_meta"]["team"], "core");
        assert_eq!(web["node_meta"]["rack"], "a");
    }

    #[test]
    fn kv_values_are_decoded() {
        let spec = SourceSpec::Kv {
            path: "cfg".into(),
            recurse: true,
            datacenter: None,
        };
        let out = render(
            &spec,
            json!([{"Key": "cfg/a", "Value": "aGk="}, {"Key": "cfg/b", "Value": null}]),
        );
        assert_eq!(out, json!({"cfg/a": "hi", "cfg/b": ""}));
        assert_eq!(render(&spec, Value::Null), json!({}));
    }
}
