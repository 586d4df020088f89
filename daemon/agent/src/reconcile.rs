//! The mesh.d reconciler: declarations from this node's config files →
//! the changes that make the cluster match them. Objects carry owner
//! `file:<node>:<path>`; only objects with this node's file prefix are ever
//! updated or deleted here, and a declaration that collides with another
//! owner's object refuses the whole reload.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use mesh_config::{camel_keys, Decl, LiveConfig, Loc, ResourceKind};
use mesh_state::StateStore;
use mesh_types::{Command, ConfigEntry, GroupedCommand, Intention, Outcome, CONFIG_KINDS};
use mesh_wire::intention::{parse_intention, parse_service_intentions};
use mesh_wire::{parse_declared, ServiceDef};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use crate::local::LocalState;
use crate::writes::Writes;

/// One change a reload makes (or, for a plan, would make).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Change {
    /// create, update or delete.
    pub action: &'static str,
    /// `intention web => api`, `service web1`, `config_entry service-defaults/api`.
    pub resource: String,
    /// The declaring file:line:col (empty for deletes).
    pub at: String,
}

/// Everything a reload would do, computed before anything is done.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub changes: Vec<Change>,
    raft: Vec<GroupedCommand>,
    local_add: Vec<(Value, String)>,
    /// Where each of `local_add` is declared.
    local_add_at: Vec<String>,
    local_remove: Vec<String>,
    /// The `ca { }` block, if any file declares one.
    pub ca: Option<(Value, Loc)>,
}

pub(crate) fn owner_prefix(node: &str) -> String {
    format!("file:{node}:")
}

/// Paths are made absolute so `-config-dir=./mesh.d` and `mesh config plan
/// mesh.d` name the same owner.
fn owner_for(node: &str, loc: &Loc) -> String {
    let path = std::path::absolute(&loc.file).unwrap_or_else(|_| loc.file.clone());
    format!("file:{node}:{}", path.display())
}

/// What the files declare, keyed like the state keys them.
#[derive(Default)]
struct Desired {
    services: BTreeMap<String, (Value, String, Loc)>,
    intentions: BTreeMap<(String, String), (Intention, Loc)>,
    entries: BTreeMap<(String, String), (ConfigEntry, Loc)>,
    ca: Option<(Value, Loc)>,
}

fn desired(node: &str, decls: &[Decl]) -> Result<Desired, Vec<String>> {
    let mut d = Desired::default();
    let mut errors = Vec::new();
    for decl in decls {
        let owner = owner_for(node, &decl.loc);
        let loc = &decl.loc;
        let mut add_intention = |i: Intention, errors: &mut Vec<String>| {
            let key = (i.source.clone(), i.destination.clone());
            match d.intentions.get(&key) {
                Some((_, first)) => errors.push(format!(
                    "{loc}: intention {} => {} is already declared at {first}",
                    key.0, key.1
                )),
                None => {
                    d.intentions.insert(key, (i, loc.clone()));
                }
            }
        };
        match decl.kind {
            ResourceKind::Service => {
                let parsed = parse_declared::<ServiceDef>(decl.value.clone(), "service")
                    .and_then(|def| def.to_service(&owner));
                match parsed {
                    Err(e) => errors.push(format!("{loc}: service: {}", e.message)),
                    Ok(svc) => match d.services.get(&svc.id) {
                        Some((_, _, first)) => errors.push(format!(
                            "{loc}: service ID {:?} is already declared at {first}",
                            svc.id
                        )),
                        None => {
                            d.services
                                .insert(svc.id, (decl.value.clone(), owner, loc.clone()));
                        }
                    },
                }
            }
            ResourceKind::Intention => match parse_intention(&decl.value, None, None, &owner) {
                Ok(i) => add_intention(i, &mut errors),
                Err(e) => errors.push(format!("{loc}: {}", e.message)),
            },
            ResourceKind::ConfigEntry => {
                let v = camel_keys(decl.value.clone());
                let kind = v["Kind"].as_str().unwrap_or_default().to_string();
                let name = v["Name"].as_str().unwrap_or_default().to_string();
                if !CONFIG_KINDS.contains(&kind.as_str()) {
                    errors.push(format!(
                        "{loc}: config_entry kind {kind:?} is not one of: {}",
                        CONFIG_KINDS.join(", ")
                    ));
                    continue;
                }
                if name.is_empty() {
                    errors.push(format!("{loc}: config_entry {kind}: name is required"));
                    continue;
                }
                if kind == "service-intentions" {
                    match parse_service_intentions(&v, &owner) {
                        Ok((_, list)) => {
                            list.into_iter().for_each(|i| add_intention(i, &mut errors))
                        }
                        Err(e) => errors.push(format!("{loc}: {}", e.message)),
                    }
                    continue;
                }
                let key = (kind.clone(), name.clone());
                if let Some((_, first)) = d.entries.get(&key) {
                    errors.push(format!(
                        "{loc}: config_entry {kind}/{name} is already declared at {first}"
                    ));
                    continue;
                }
                let entry = ConfigEntry {
                    kind,
                    name,
                    body_json: v.to_string(),
                    owner,
                    ..Default::default()
                };
                d.entries.insert(key, (entry, loc.clone()));
            }
            ResourceKind::Ca => match &d.ca {
                Some((_, first)) => {
                    errors.push(format!("{loc}: a ca block is already declared at {first}"))
                }
                None => d.ca = Some((decl.value.clone(), loc.clone())),
            },
        }
    }
    if errors.is_empty() {
        Ok(d)
    } else {
        Err(errors)
    }
}

/// Offline check of declarations (`mesh validate`): every error, each with file:line:col.
pub fn check_declarations(decls: &[Decl]) -> Result<(), Vec<String>> {
    desired("validate", decls).map(|_| ())
}

fn same_intention(a: &Intention, b: &Intention) -> bool {
    a.action == b.action
        && a.permissions == b.permissions
        && a.description == b.description
        && a.meta == b.meta
}

fn same_body(a: &str, b: &str) -> bool {
    let parse = |s: &str| serde_json::from_str::<Value>(s).ok();
    parse(a) == parse(b)
}

/// The cluster objects a diff looks at: those this node's files own and
/// those the files declare (to find collisions), keyed like the state.
#[derive(Debug, Default)]
pub(crate) struct ClusterView {
    intentions: BTreeMap<(String, String), Intention>,
    entries: BTreeMap<(String, String), ConfigEntry>,
}

impl ClusterView {
    fn from_view(view: mesh_api::DeclaredView) -> Self {
        let mut out = ClusterView::default();
        for i in view.intentions {
            out.intentions
                .insert((i.source.clone(), i.destination.clone()), i);
        }
        for e in view.config_entries {
            out.entries.insert((e.kind.clone(), e.name.clone()), e);
        }
        out
    }
}

/// Keys of stored objects: (source, destination) or (kind, name).
type Keys = Vec<(String, String)>;

impl Desired {
    /// The keys of what the files declare, as a view asks for them.
    fn keys(&self) -> (Keys, Keys) {
        (
            self.intentions.keys().cloned().collect(),
            self.entries.keys().cloned().collect(),
        )
    }
}

/// One of this agent's services as the diff sees it.
#[derive(Debug, Clone)]
pub(crate) struct LocalEntry {
    owner: String,
    /// The definition it was registered from (null for a sidecar, which
    /// comes and goes with its service).
    definition: Value,
}

/// What the reconciler needs of the agent: the node it plans for, the
/// replicated state (servers) or the way to a server (client agents), this
/// agent's registrations and its one way to write.
#[derive(Clone)]
pub(crate) struct Reconciler {
    pub node_name: String,
    /// Discovery chains are compiled for this datacenter.
    pub datacenter: String,
    pub server: bool,
    pub state: Arc<StateStore>,
    pub local: Arc<LocalState>,
    pub writes: Arc<Writes>,
    pub http: reqwest::Client,
    /// The agent token a client agent presents to a server.
    pub live: watch::Receiver<Arc<LiveConfig>>,
}

/// Compute the changes that make the cluster match `decls`, against the
/// cluster as it is now: a server's own replica, or, on a client agent
/// (which holds none), the objects a server says its files own or declare,
/// so a client's files can update and delete what they declared before. A
/// server that cannot be reached is [`ReloadError::Unavailable`] (retried).
pub(crate) async fn plan_now(agent: &Reconciler, decls: &[Decl]) -> Result<Plan, ReloadError> {
    let node = &agent.node_name;
    let prefix = owner_prefix(node);
    let want = desired(node, decls).map_err(ReloadError::Invalid)?;
    let (intentions, entries) = want.keys();
    let view = if agent.server {
        agent
            .state
            .read(|s| mesh_api::declared_view(s, &prefix, &intentions, &entries))
    } else {
        fetch_view(agent, &prefix, &intentions, &entries)
            .await
            .map_err(ReloadError::Unavailable)?
    };
    plan(agent, &prefix, &want, ClusterView::from_view(view)).map_err(ReloadError::Invalid)
}

/// A client agent's view of the cluster, from a server.
async fn fetch_view(
    agent: &Reconciler,
    prefix: &str,
    intentions: &[(String, String)],
    entries: &[(String, String)],
) -> Result<mesh_api::DeclaredView, String> {
    let server = agent
        .writes
        .server_base_url()
        .ok_or("no known servers: this client agent has not joined a cluster with servers")?;
    let body = serde_json::json!({
        "OwnerPrefix": prefix,
        "Intentions": intentions.iter()
            .map(|(s, d)| serde_json::json!({"Source": s, "Destination": d}))
            .collect::<Vec<_>>(),
        "ConfigEntries": entries.iter()
            .map(|(k, n)| serde_json::json!({"Kind": k, "Name": n}))
            .collect::<Vec<_>>(),
    });
    let mut req = agent
        .http
        .post(format!("{server}/v1/internal/mesh.d/view"))
        .json(&body);
    if let Some(token) = agent.live.borrow().acl.own_token() {
        req = req.header("x-consul-token", token);
    }
    let what =
        |e: reqwest::Error| format!("reading the cluster's objects from server {server}: {e}");
    req.send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(what)?
        .json()
        .await
        .map_err(what)
}

fn plan(
    agent: &Reconciler,
    prefix: &str,
    want: &Desired,
    cluster: ClusterView,
) -> Result<Plan, Vec<String>> {
    let local: BTreeMap<String, LocalEntry> = agent
        .local
        .owners_and_definitions()
        .into_iter()
        .map(|(id, (owner, definition))| (id, LocalEntry { owner, definition }))
        .collect();
    let (plan, mut errors) = diff(prefix, want, &cluster, &local);
    errors.extend(chain_errors(prefix, want, &cluster, &agent.datacenter));
    // Only what will be registered needs the full check (checks, sidecar);
    // unchanged services passed it when they were applied.
    for ((def, owner), at) in plan.local_add.iter().zip(&plan.local_add_at) {
        if let Err(e) = agent.local.prepare_service(def, owner) {
            errors.push(format!("{at}: {}", e.message));
        }
    }
    if errors.is_empty() {
        Ok(plan)
    } else {
        Err(errors)
    }
}

/// Entries that are bad on their own, and discovery chains the declared
/// entries would break, all checked together (a splitter and the resolver
/// defining its subsets may come in one change), each at its file.
fn chain_errors(
    prefix: &str,
    want: &Desired,
    cluster: &ClusterView,
    datacenter: &str,
) -> Vec<String> {
    let mut errors = Vec::new();
    for ((kind, name), (e, loc)) in &want.entries {
        if let Err(err) = mesh_chain::entries::validate(kind, name, &e.body_json) {
            errors.push(format!("{loc}: {err}"));
        }
    }
    if !errors.is_empty() {
        return errors;
    }
    let before = |k: &str, n: &str| {
        cluster
            .entries
            .get(&(k.to_string(), n.to_string()))
            .map(|e| e.body_json.clone())
    };
    let after = |k: &str, n: &str| {
        let key = (k.to_string(), n.to_string());
        match (want.entries.get(&key), cluster.entries.get(&key)) {
            (Some((e, _)), _) => Some(e.body_json.clone()),
            // Ours and no longer declared: deleted by this change.
            (None, Some(cur)) if cur.owner.starts_with(prefix) => None,
            (None, cur) => cur.map(|e| e.body_json.clone()),
        }
    };
    let routed = ["service-router", "service-splitter", "service-resolver"];
    let services: BTreeSet<&str> = want
        .entries
        .keys()
        .chain(cluster.entries.keys())
        .filter(|(k, _)| routed.contains(&k.as_str()))
        .map(|(_, n)| n.as_str())
        .collect();
    for service in services {
        let Err(err) = mesh_chain::compile(&after, service, datacenter, "") else {
            continue;
        };
        if mesh_chain::compile(&before, service, datacenter, "").is_err() {
            continue;
        }
        let at = want
            .entries
            .get(&(err.kind.clone(), err.name.clone()))
            .map(|(_, loc)| loc.to_string())
            .unwrap_or_else(|| "mesh.d".into());
        errors.push(format!("{at}: {err}"));
    }
    errors
}

/// The changes that take the cluster and this agent from what the views
/// show to what `want` declares, and every collision with another owner.
/// Objects are only ever updated or deleted when `prefix` owns them.
fn diff(
    prefix: &str,
    want: &Desired,
    cluster: &ClusterView,
    local: &BTreeMap<String, LocalEntry>,
) -> (Plan, Vec<String>) {
    let mut plan = Plan {
        ca: want.ca.clone(),
        ..Default::default()
    };
    let mut errors = Vec::new();
    let change = |plan: &mut Plan, action, resource: String, at: Option<&Loc>| {
        plan.changes.push(Change {
            action,
            resource,
            at: at.map(ToString::to_string).unwrap_or_default(),
        })
    };
    for (key, (i, loc)) in &want.intentions {
        let what = format!("intention {} => {}", key.0, key.1);
        match cluster.intentions.get(key) {
            None => {
                let mut i = i.clone();
                i.id = uuid::Uuid::new_v4().to_string();
                plan.raft.push(GroupedCommand::IntentionSet { intention: i, takeover: false });
                change(&mut plan, "create", what, Some(loc));
            }
            Some(cur) if cur.owner.starts_with(prefix) => {
                if cur.owner != i.owner || !same_intention(cur, i) {
                    plan.raft.push(GroupedCommand::IntentionSet { intention: i.clone(), takeover: true });
                    change(&mut plan, "update", what, Some(loc));
                }
            }
            // Declared identically elsewhere: already true, and not ours to delete later.
            Some(cur) if same_intention(cur, i) => {}
            Some(cur) => errors.push(format!(
                "{loc}: {what} conflicts with the one managed by {}; change or remove one of them (or take it over through the API)",
                cur.owner
            )),
        }
    }
    for (key, cur) in &cluster.intentions {
        if cur.owner.starts_with(prefix) && !want.intentions.contains_key(key) {
            plan.raft.push(GroupedCommand::IntentionDelete {
                source: cur.source.clone(),
                destination: cur.destination.clone(),
                owner: cur.owner.clone(),
                takeover: true,
            });
            change(
                &mut plan,
                "delete",
                format!("intention {} => {}", key.0, key.1),
                None,
            );
        }
    }
    for (key, (e, loc)) in &want.entries {
        let what = format!("config_entry {}/{}", key.0, key.1);
        match cluster.entries.get(key) {
            None => {
                plan.raft.push(GroupedCommand::ConfigSet {
                    entry: e.clone(),
                    cas: None,
                    takeover: false,
                });
                change(&mut plan, "create", what, Some(loc));
            }
            Some(cur) if cur.owner.starts_with(prefix) => {
                if cur.owner != e.owner || !same_body(&cur.body_json, &e.body_json) {
                    plan.raft.push(GroupedCommand::ConfigSet {
                        entry: e.clone(),
                        cas: None,
                        takeover: true,
                    });
                    change(&mut plan, "update", what, Some(loc));
                }
            }
            Some(cur) if same_body(&cur.body_json, &e.body_json) => {}
            Some(cur) => errors.push(format!(
                "{loc}: {what} conflicts with the one managed by {}; change or remove one of them",
                cur.owner
            )),
        }
    }
    for (key, cur) in &cluster.entries {
        if cur.owner.starts_with(prefix) && !want.entries.contains_key(key) {
            plan.raft.push(GroupedCommand::ConfigDelete {
                kind: cur.kind.clone(),
                name: cur.name.clone(),
                owner: cur.owner.clone(),
                takeover: true,
            });
            change(
                &mut plan,
                "delete",
                format!("config_entry {}/{}", key.0, key.1),
                None,
            );
        }
    }
    for (id, (def, owner, loc)) in &want.services {
        let what = format!("service {id}");
        match local.get(id) {
            None => {
                plan.local_add.push((def.clone(), owner.clone()));
                plan.local_add_at.push(format!("{loc}: service {id}"));
                change(&mut plan, "create", what, Some(loc));
            }
            Some(cur) if cur.owner.starts_with(prefix) => {
                if cur.definition != *def || cur.owner != *owner {
                    plan.local_add.push((def.clone(), owner.clone()));
                    plan.local_add_at.push(format!("{loc}: service {id}"));
                    change(&mut plan, "update", what, Some(loc));
                }
            }
            Some(cur) => errors.push(format!(
                "{loc}: {what} is already registered on this agent by {}; deregister it first or use another ID",
                cur.owner
            )),
        }
    }
    for (id, cur) in local {
        // Sidecars (no definition of their own) come and go with their service.
        if cur.definition.is_null() || !cur.owner.starts_with(prefix) {
            continue;
        }
        if !want.services.contains_key(id) {
            plan.local_remove.push(id.clone());
            change(&mut plan, "delete", format!("service {id}"), None);
        }
    }
    (plan, errors)
}

/// Why a reload did not apply.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReloadError {
    /// The files are wrong (each error with file:line:col): fix them.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    /// No leader or no server reachable: retried.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The cluster refused the change (a conflict that appeared since planning).
    #[error("{0}")]
    Refused(String),
}

impl ReloadError {
    /// The errors a reload status lists.
    pub(crate) fn errors(self) -> Vec<String> {
        match self {
            ReloadError::Invalid(errors) => errors,
            ReloadError::Unavailable(why) => vec![format!("unavailable: {why}")],
            ReloadError::Refused(why) => vec![why],
        }
    }
}

/// Apply a plan: cluster-wide objects in one all-or-nothing Raft entry, then
/// this agent's services.
pub(crate) async fn apply(agent: &Reconciler, plan: &Plan) -> Result<(), ReloadError> {
    if !plan.raft.is_empty() {
        let commands = plan.raft.clone();
        match agent
            .writes
            .propose(&Command::AllOrNothing { commands })
            .await
        {
            Ok(Outcome::Done) => {}
            Ok(Outcome::Conflict { what, owner }) => {
                return Err(ReloadError::Refused(format!(
                    "{what} is managed by {owner}"
                )))
            }
            Ok(Outcome::Rejected(why)) => return Err(ReloadError::Refused(why)),
            Ok(other) => {
                return Err(ReloadError::Refused(format!(
                    "unexpected outcome {other:?}"
                )))
            }
            Err(e) => return Err(ReloadError::Unavailable(format!("{e:#}"))),
        }
    }
    if plan.local_remove.is_empty() && plan.local_add.is_empty() {
        return Ok(());
    }
    agent
        .local
        .apply_batch(&plan.local_remove, &plan.local_add)
        .map_err(|e| ReloadError::Refused(e.message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_types::IntentionAction;

    const PREFIX: &str = "file:n1:";
    const MINE: &str = "file:n1:/etc/mesh.d/a.hcl";

    fn loc(line: usize) -> Loc {
        Loc {
            file: "/etc/mesh.d/a.hcl".into(),
            pos: mesh_config::Pos { line, col: 1 },
        }
    }

    fn intention(src: &str, dst: &str, action: IntentionAction, owner: &str) -> Intention {
        Intention {
            source: src.into(),
            destination: dst.into(),
            action: Some(action),
            owner: owner.into(),
            ..Default::default()
        }
    }

    fn entry(name: &str, protocol: &str, owner: &str) -> ConfigEntry {
        ConfigEntry {
            kind: "service-defaults".into(),
            name: name.into(),
            body_json:
                serde_json::json!({"Kind": "service-defaults", "Name": name, "Protocol": protocol})
                    .to_string(),
            owner: owner.into(),
            ..Default::default()
        }
    }

    /// What a case starts from: declared, in the cluster, on the agent.
    #[derive(Default)]
    struct Case {
        want: Desired,
        cluster: ClusterView,
        local: BTreeMap<String, LocalEntry>,
    }

    impl Case {
        fn declare_intention(mut self, i: Intention) -> Self {
            let key = (i.source.clone(), i.destination.clone());
            self.want.intentions.insert(key, (i, loc(3)));
            self
        }
        fn stored_intention(mut self, i: Intention) -> Self {
            let key = (i.source.clone(), i.destination.clone());
            self.cluster.intentions.insert(key, i);
            self
        }
        fn declare_entry(mut self, e: ConfigEntry) -> Self {
            let key = (e.kind.clone(), e.name.clone());
            self.want.entries.insert(key, (e, loc(7)));
            self
        }
        fn stored_entry(mut self, e: ConfigEntry) -> Self {
            let key = (e.kind.clone(), e.name.clone());
            self.cluster.entries.insert(key, e);
            self
        }
        fn declare_service(mut self, id: &str, port: u16) -> Self {
            let def = serde_json::json!({"name": id, "port": port});
            self.want
                .services
                .insert(id.into(), (def, MINE.into(), loc(11)));
            self
        }
        fn registered(mut self, id: &str, port: Option<u16>, owner: &str) -> Self {
            let definition =
                port.map_or(Value::Null, |p| serde_json::json!({"name": id, "port": p}));
            let entry = LocalEntry {
                owner: owner.into(),
                definition,
            };
            self.local.insert(id.into(), entry);
            self
        }
        /// The plan's changes as `action resource`, and the errors.
        fn diff(&self) -> (Vec<String>, Vec<String>) {
            let (plan, errors) = diff(PREFIX, &self.want, &self.cluster, &self.local);
            let changes = plan
                .changes
                .iter()
                .map(|c| format!("{} {}", c.action, c.resource))
                .collect();
            assert_eq!(
                plan.raft.len() + plan.local_add.len() + plan.local_remove.len(),
                plan.changes.len(),
                "every listed change is a command"
            );
            (changes, errors)
        }
    }

    #[test]
    fn the_diff_makes_only_the_changes_needed() {
        use IntentionAction::{Allow, Deny};
        let theirs = "file:n2:/etc/mesh.d/b.hcl";
        let cases: Vec<(&str, Case, &[&str])> = vec![
            ("nothing declared, nothing owned", Case::default(), &[]),
            (
                "a new intention is created",
                Case::default().declare_intention(intention("web", "api", Allow, MINE)),
                &["create intention web => api"],
            ),
            (
                "an unchanged intention is left alone",
                Case::default()
                    .declare_intention(intention("web", "api", Allow, MINE))
                    .stored_intention(intention("web", "api", Allow, MINE)),
                &[],
            ),
            (
                "a changed action is an update",
                Case::default()
                    .declare_intention(intention("web", "api", Deny, MINE))
                    .stored_intention(intention("web", "api", Allow, MINE)),
                &["update intention web => api"],
            ),
            (
                "a declaration moved to another of this node's files is an update",
                Case::default()
                    .declare_intention(intention("web", "api", Allow, MINE))
                    .stored_intention(intention(
                        "web",
                        "api",
                        Allow,
                        "file:n1:/etc/mesh.d/old.hcl",
                    )),
                &["update intention web => api"],
            ),
            (
                "an intention no file declares any more is deleted",
                Case::default().stored_intention(intention("web", "api", Allow, MINE)),
                &["delete intention web => api"],
            ),
            (
                "another node's intention is never deleted",
                Case::default().stored_intention(intention("web", "api", Allow, theirs)),
                &[],
            ),
            (
                "one declared identically elsewhere is already true",
                Case::default()
                    .declare_intention(intention("web", "api", Allow, MINE))
                    .stored_intention(intention("web", "api", Allow, theirs)),
                &[],
            ),
            (
                "config entries: create, update, delete",
                Case::default()
                    .declare_entry(entry("api", "http", MINE))
                    .declare_entry(entry("db", "tcp", MINE))
                    .stored_entry(entry("db", "http", MINE))
                    .stored_entry(entry("old", "http", MINE))
                    .stored_entry(entry("other", "http", theirs)),
                &[
                    "create config_entry service-defaults/api",
                    "update config_entry service-defaults/db",
                    "delete config_entry service-defaults/old",
                ],
            ),
            (
                "services: create, update, delete; sidecars and others' services stay",
                Case::default()
                    .declare_service("web", 80)
                    .declare_service("api", 81)
                    .registered("api", Some(80), MINE)
                    .registered("gone", Some(82), MINE)
                    .registered("web-sidecar-proxy", None, MINE)
                    .registered("by-hand", Some(83), "api"),
                // In ID order.
                &[
                    "update service api",
                    "create service web",
                    "delete service gone",
                ],
            ),
        ];
        for (name, case, expected) in cases {
            let (changes, errors) = case.diff();
            assert!(errors.is_empty(), "{name}: {errors:?}");
            assert_eq!(changes, expected, "{name}");
        }
    }

    #[test]
    fn collisions_with_other_owners_are_errors_that_say_where() {
        use IntentionAction::{Allow, Deny};
        let theirs = "file:n2:/etc/mesh.d/b.hcl";
        let cases: Vec<(&str, Case, &str)> = vec![
            (
                "an intention another owner manages differently",
                Case::default()
                    .declare_intention(intention("web", "api", Deny, MINE))
                    .stored_intention(intention("web", "api", Allow, theirs)),
                "/etc/mesh.d/a.hcl:3:1: intention web => api conflicts with the one managed by file:n2:",
            ),
            (
                "a config entry another owner manages differently",
                Case::default()
                    .declare_entry(entry("api", "http", MINE))
                    .stored_entry(entry("api", "grpc", "api")),
                "/etc/mesh.d/a.hcl:7:1: config_entry service-defaults/api conflicts with the one managed by api",
            ),
            (
                "a service ID registered through the API",
                Case::default()
                    .declare_service("web", 80)
                    .registered("web", Some(80), "api"),
                "/etc/mesh.d/a.hcl:11:1: service web is already registered on this agent by api",
            ),
        ];
        for (name, case, expected) in cases {
            let (changes, errors) = case.diff();
            assert!(
                errors.iter().any(|e| e.starts_with(expected)),
                "{name}: {errors:?}"
            );
            assert!(
                changes.is_empty(),
                "{name}: nothing else changes: {changes:?}"
            );
        }
    }
}
