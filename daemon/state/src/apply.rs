//! Applying commands: dispatch, KV and transactions. Catalog and config
//! entries are in `catalog.rs`.

use std::collections::BTreeMap;

use mesh_types::{
    decode_entry, Command, GroupedCommand, KvEntry, LogEntry, Outcome, TxnCatalogOp, TxnOp,
    TxnResult, MAX_ENTRY_BYTES,
};

/// The largest KV value any configuration allows (`limits.kv_max_value_size`).
const MAX_KV_VALUE_CEILING: usize = MAX_ENTRY_BYTES / 2;

use crate::{State, Table};

pub(crate) type Applied = (Outcome, Vec<Table>);

/// The tables an all-or-nothing group may touch, saved to put back.
type Saved = (
    BTreeMap<(String, String), mesh_types::Intention>,
    BTreeMap<(String, String), mesh_types::ConfigEntry>,
    crate::tables::TableIndexes,
);

pub(crate) fn rejected(why: impl Into<String>) -> Applied {
    (Outcome::Rejected(why.into()), Vec::new())
}

impl State {
    /// Apply an encoded log entry at `index`. Deterministic: the same bytes
    /// at the same index give the same outcome and state on every replica,
    /// and bytes that do not decode are a refusal, never a panic.
    pub(crate) fn apply(&mut self, index: u64, bytes: &[u8]) -> Applied {
        self.last_index = self.last_index.max(index);
        match decode_entry(bytes) {
            Ok(LogEntry::One(cmd)) => self.apply_command(index, *cmd),
            Ok(LogEntry::Batch(commands)) => {
                let mut outcomes = Vec::with_capacity(commands.len());
                let mut changed = Vec::new();
                for cmd in commands {
                    let (outcome, tables) = self.apply_command(index, cmd);
                    outcomes.push(outcome);
                    for t in tables {
                        if !changed.contains(&t) {
                            changed.push(t);
                        }
                    }
                }
                (Outcome::Batch(outcomes), changed)
            }
            Err(err) => rejected(err.to_string()),
        }
    }

    /// Apply one decoded command at `index`.
    pub(crate) fn apply_one(&mut self, index: u64, cmd: Command) -> Applied {
        self.last_index = self.last_index.max(index);
        self.apply_command(index, cmd)
    }

    pub(crate) fn advance(&mut self, index: u64) {
        self.last_index = self.last_index.max(index);
    }

    fn apply_command(&mut self, index: u64, cmd: Command) -> Applied {
        // A node's sessions follow its health: find whose node a catalog
        // command changes, and check its sessions afterwards.
        let node = match &cmd {
            Command::NodeRegister { node } | Command::Register { node, .. } => {
                Some(node.name.clone())
            }
            Command::NodeDeregister { node }
            | Command::ServiceDeregister { node, .. }
            | Command::CheckRegister { node, .. }
            | Command::CheckDeregister { node, .. } => Some(node.clone()),
            _ => None,
        };
        let kv_delete = matches!(
            cmd,
            Command::KvDelete { .. } | Command::Txn { .. } | Command::Restore { .. }
        );
        let (outcome, mut changed) = self.dispatch(index, cmd);
        if kv_delete {
            self.forget_locks_of_removed_keys();
        }
        if let Some(node) = node.filter(|_| !self.sessions.sessions.is_empty()) {
            for t in self.sessions_follow_health(index, &node) {
                if !changed.contains(&t) {
                    changed.push(t);
                }
            }
        }
        (outcome, changed)
    }

    fn dispatch(&mut self, index: u64, cmd: Command) -> Applied {
        match cmd {
            Command::Noop => (Outcome::Done, Vec::new()),
            Command::KvSet {
                key,
                value,
                flags,
                cas,
            } => self.kv_set(index, key, value, flags, cas),
            Command::KvDelete { key, recurse, cas } => self.kv_delete(index, &key, recurse, cas),
            Command::Txn { ops } => self.txn(index, ops),
            Command::NodeRegister { node } => {
                self.register(index, node, false, None, Vec::new(), false)
            }
            Command::NodeDeregister { node } => self.node_deregister(index, &node),
            Command::Register {
                node,
                skip_node_update,
                service,
                checks,
                takeover,
            } => self.register(index, node, skip_node_update, service, checks, takeover),
            Command::ServiceRegister { node, service } => {
                self.register_on_existing(index, node, Some(service), Vec::new())
            }
            Command::CheckRegister { node, check } => {
                self.register_on_existing(index, node, None, vec![check])
            }
            Command::ServiceDeregister {
                node,
                service_id,
                owner,
                takeover,
            } => self.service_deregister(index, &node, &service_id, &owner, takeover),
            Command::CheckDeregister { node, check_id } => {
                self.check_deregister(index, node, check_id)
            }
            Command::ConfigSet {
                entry,
                cas,
                takeover,
            } => self.config_set(index, entry, cas, takeover),
            Command::ConfigDelete {
                kind,
                name,
                owner,
                takeover,
            } => self.config_delete(index, &kind, &name, &owner, takeover),
            Command::Restore { snapshot } => self.restore_from(index, &snapshot),
            Command::IntentionSet {
                intention,
                takeover,
            } => self.intention_set(index, intention, takeover),
            Command::IntentionDelete {
                source,
                destination,
                owner,
                takeover,
            } => self.intention_delete(index, &source, &destination, &owner, takeover),
            Command::IntentionsReplace {
                destination,
                intentions,
                owner,
                takeover,
            } => self.intentions_replace(index, &destination, intentions, &owner, takeover),
            Command::CaSet { state_json, cas } => self.ca_set(index, state_json, cas),
            Command::AllOrNothing { commands } => self.all_or_nothing(index, commands),
            Command::CaLeafIssued { key, root_id } => {
                // Progress only: no watcher needs waking for it.
                self.ca_leaves.insert(key, root_id);
                (Outcome::Done, Vec::new())
            }
            Command::AclPolicySet { policy } => self.acl_policy_set(index, policy),
            Command::AclPolicyDelete { id } => self.acl_policy_delete(index, &id),
            Command::AclTokenSet { token } => self.acl_token_set(index, token),
            Command::AclTokenDelete { accessor_id } => self.acl_token_delete(index, &accessor_id),
            Command::AclBootstrap { token } => self.acl_bootstrap(index, token),
            Command::SessionCreate { session } => self.session_create(index, session),
            Command::SessionDestroy { id } => self.session_destroy(index, &id),
            Command::KvAcquire {
                key,
                value,
                flags,
                session,
            } => self.kv_acquire(index, key, value, flags, session),
            Command::KvRelease {
                key,
                value,
                flags,
                session,
            } => self.kv_release(index, key, value, flags, session),
            // Answered by the leader from memory; never in the log.
            Command::SessionRenew { .. } => rejected("session renewals are not log entries"),
            Command::QuerySet { query } => self.query_set(index, query),
            Command::QueryDelete { id } => self.query_delete(index, &id),
            Command::CoordinateBatch { updates } => self.coordinate_batch(index, updates),
            Command::AclTokenSetLinked { token, links } => {
                self.acl_token_set_linked(index, token, links)
            }
            Command::AclRoleSet { role } => self.acl_role_set(index, role),
            Command::AclRoleDelete { id } => self.acl_role_delete(index, &id),
            Command::AclAuthMethodSet { method } => self.acl_auth_method_set(index, method),
            Command::AclAuthMethodDelete { name } => self.acl_auth_method_delete(index, &name),
            Command::AclBindingRuleSet { rule } => self.acl_binding_rule_set(index, rule),
            Command::AclBindingRuleDelete { id } => self.acl_binding_rule_delete(index, &id),
            Command::AclTokensExpire {
                accessors,
                now_unix_ms,
            } => self.acl_tokens_expire(index, &accessors, now_unix_ms),
        }
    }

    /// Only intention and config-entry commands may be grouped (the type
    /// says so): they touch two tables, which are cheap to put back if a
    /// later command is refused.
    fn all_or_nothing(&mut self, index: u64, commands: Vec<GroupedCommand>) -> Applied {
        let saved = (self.intentions.clone(), self.config.clone(), self.indexes);
        let mut changed = Vec::new();
        for cmd in commands {
            let (outcome, tables) = self.apply_command(index, cmd.into());
            match outcome {
                Outcome::Done | Outcome::Bool(true) => {}
                Outcome::Bool(false) => {
                    return self.undo(saved, (Outcome::Bool(false), Vec::new()));
                }
                refused => return self.undo(saved, (refused, Vec::new())),
            }
            for t in tables {
                if !changed.contains(&t) {
                    changed.push(t);
                }
            }
        }
        (Outcome::Done, changed)
    }

    fn undo(&mut self, saved: Saved, answer: Applied) -> Applied {
        (self.intentions, self.config, self.indexes) = saved;
        answer
    }

    fn restore_from(&mut self, index: u64, snapshot: &[u8]) -> Applied {
        match State::from_snapshot(snapshot) {
            Ok(mut fresh) => {
                // Indexes move forward so blocking queries see news.
                fresh.last_index = index;
                fresh.acl.index = index;
                fresh.sessions.index = index;
                fresh.indexes = crate::tables::TableIndexes {
                    kv: index,
                    nodes: index,
                    services: index,
                    checks: index,
                    config: index,
                    ca: index,
                };
                for v in fresh.service_index.values_mut() {
                    *v = index;
                }
                *self = fresh;
                (
                    Outcome::Done,
                    vec![
                        Table::Kv,
                        Table::Nodes,
                        Table::Services,
                        Table::Checks,
                        Table::Ca,
                        Table::Config,
                        Table::Acl,
                    ],
                )
            }
            Err(e) => rejected(e.to_string()),
        }
    }

    // === KV ===

    fn kv_set(
        &mut self,
        index: u64,
        key: String,
        value: Vec<u8>,
        flags: u64,
        cas: Option<u64>,
    ) -> Applied {
        if let Err(why) = check_kv(&key, &value) {
            return rejected(why);
        }
        if let Some(want) = cas {
            if self.kv.get(&key).map_or(0, |e| e.modify_index) != want {
                return (Outcome::Bool(false), Vec::new());
            }
        }
        self.kv_put(index, key, value, flags);
        (Outcome::Bool(true), vec![Table::Kv])
    }

    fn kv_put(&mut self, index: u64, key: String, value: Vec<u8>, flags: u64) -> KvEntry {
        let existing = self.kv.get(&key);
        let entry = KvEntry {
            create_index: existing.map_or(index, |e| e.create_index),
            lock_index: existing.map_or(0, |e| e.lock_index),
            key: key.clone(),
            value,
            flags,
            modify_index: index,
        };
        self.kv.insert(key, entry.clone());
        self.indexes.kv = index;
        entry
    }

    fn kv_delete(&mut self, index: u64, key: &str, recurse: bool, cas: Option<u64>) -> Applied {
        if let Some(want) = cas {
            if recurse {
                return rejected("cas cannot be combined with recurse");
            }
            if self.kv.get(key).map_or(0, |e| e.modify_index) != want {
                return (Outcome::Bool(false), Vec::new());
            }
        }
        if self.kv_remove(index, key, recurse) {
            (Outcome::Bool(true), vec![Table::Kv])
        } else {
            (Outcome::Bool(true), Vec::new())
        }
    }

    fn kv_remove(&mut self, index: u64, key: &str, recurse: bool) -> bool {
        let removed = if recurse {
            let doomed: Vec<String> = self.kv_list(key).map(|e| e.key.clone()).collect();
            for k in &doomed {
                self.kv.remove(k);
            }
            !doomed.is_empty()
        } else {
            self.kv.remove(key).is_some()
        };
        if removed {
            self.indexes.kv = index;
        }
        removed
    }

    /// Operations run in order against an overlay of the store; only if
    /// every one succeeds is the overlay committed (all or nothing).
    fn txn(&mut self, index: u64, ops: Vec<TxnOp>) -> Applied {
        if ops.iter().any(|op| matches!(op, TxnOp::Catalog(_))) {
            return self.txn_all(index, ops);
        }
        let mut tx = Overlay {
            base: &self.kv,
            changes: BTreeMap::new(),
        };
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for (i, op) in ops.into_iter().enumerate() {
            if let Err(why) = tx.run(index, op, &mut results) {
                errors.push((i, why));
            }
        }
        if !errors.is_empty() {
            let results = Vec::new();
            return (Outcome::Txn { results, errors }, Vec::new());
        }
        let changes = std::mem::take(&mut tx.changes);
        let wrote = !changes.is_empty();
        for (key, entry) in changes {
            match entry {
                Some(e) => self.kv.insert(key, e),
                None => self.kv.remove(&key),
            };
        }
        if wrote {
            self.indexes.kv = index;
        }
        let changed = if wrote { vec![Table::Kv] } else { Vec::new() };
        (Outcome::Txn { results, errors }, changed)
    }
}

impl State {
    /// A transaction with catalog or session operations: each runs in
    /// order on the state itself, and a failure puts back a copy taken
    /// first. The copy costs a pass over the state, paid only by these
    /// transactions (KV-only ones keep the overlay above).
    fn txn_all(&mut self, index: u64, ops: Vec<TxnOp>) -> Applied {
        let saved = self.clone();
        let mut results = Vec::new();
        let mut errors = Vec::new();
        let mut changed = Vec::new();
        for (i, op) in ops.into_iter().enumerate() {
            let ran = match op {
                TxnOp::Catalog(op) => self.txn_catalog_op(index, *op, &mut results, &mut changed),
                kv => self.txn_kv_op(index, kv, &mut results, &mut changed),
            };
            if let Err(why) = ran {
                errors.push((i, why));
            }
        }
        if !errors.is_empty() {
            *self = saved;
            return (
                Outcome::TxnAll {
                    results: Vec::new(),
                    errors,
                },
                Vec::new(),
            );
        }
        changed.sort_by_key(|t| *t as u8);
        changed.dedup();
        (Outcome::TxnAll { results, errors }, changed)
    }

    fn txn_kv_op(
        &mut self,
        index: u64,
        op: TxnOp,
        results: &mut Vec<TxnResult>,
        changed: &mut Vec<Table>,
    ) -> Result<(), String> {
        let mut tx = Overlay {
            base: &self.kv,
            changes: BTreeMap::new(),
        };
        let mut entries = Vec::new();
        tx.run(index, op, &mut entries)?;
        let changes = std::mem::take(&mut tx.changes);
        if !changes.is_empty() {
            for (key, entry) in changes {
                match entry {
                    Some(e) => self.kv.insert(key, e),
                    None => self.kv.remove(&key),
                };
            }
            self.indexes.kv = index;
            changed.push(Table::Kv);
        }
        results.extend(entries.into_iter().map(TxnResult::Kv));
        Ok(())
    }

    /// Runs one command of a transaction; its refusal is the op's error.
    fn txn_command(
        &mut self,
        index: u64,
        cmd: Command,
        changed: &mut Vec<Table>,
    ) -> Result<(), String> {
        let (outcome, tables) = self.apply_command(index, cmd);
        match outcome {
            Outcome::Done | Outcome::Bool(true) => {
                changed.extend(tables);
                Ok(())
            }
            Outcome::Rejected(why) => Err(why),
            Outcome::Conflict { what, owner } => Err(format!("{what} is managed by {owner}")),
            other => Err(format!("not applied: {other:?}")),
        }
    }

    fn txn_catalog_op(
        &mut self,
        index: u64,
        op: TxnCatalogOp,
        results: &mut Vec<TxnResult>,
        changed: &mut Vec<Table>,
    ) -> Result<(), String> {
        let expect = |what: &str, have: u64, want: Option<u64>| match want {
            Some(want) if want != have => {
                Err(format!("current modify index {have} != {want} for {what}"))
            }
            _ => Ok(()),
        };
        match op {
            TxnCatalogOp::NodeSet { node, cas } => {
                let name = node.name.clone();
                let have = self.nodes.get(&name).map_or(0, |n| n.modify_index);
                expect(&format!("node {name:?}"), have, cas)?;
                self.txn_command(index, Command::NodeRegister { node }, changed)?;
                results.extend(self.nodes.get(&name).cloned().map(TxnResult::Node));
            }
            TxnCatalogOp::NodeGet { node } => {
                let found = self.nodes.get(&node).cloned();
                results.push(TxnResult::Node(
                    found.ok_or_else(|| format!("node {node:?} doesn't exist"))?,
                ));
            }
            TxnCatalogOp::NodeDelete { node, cas } => {
                let have = self.nodes.get(&node).map_or(0, |n| n.modify_index);
                expect(&format!("node {node:?}"), have, cas)?;
                self.txn_command(index, Command::NodeDeregister { node }, changed)?;
            }
            TxnCatalogOp::ServiceSet { node, service, cas } => {
                let key = (node.clone(), service.id.clone());
                let have = self.services.get(&key).map_or(0, |s| s.modify_index);
                expect(
                    &format!("service {:?} on node {node:?}", service.id),
                    have,
                    cas,
                )?;
                self.txn_command(
                    index,
                    Command::ServiceRegister {
                        node: node.clone(),
                        service,
                    },
                    changed,
                )?;
                if let Some(s) = self.services.get(&key) {
                    results.push(TxnResult::Service {
                        node,
                        service: s.clone(),
                    });
                }
            }
            TxnCatalogOp::ServiceGet { node, service_id } => {
                let found = self
                    .services
                    .get(&(node.clone(), service_id.clone()))
                    .cloned();
                let service = found.ok_or_else(|| {
                    format!("service {service_id:?} on node {node:?} doesn't exist")
                })?;
                results.push(TxnResult::Service { node, service });
            }
            TxnCatalogOp::ServiceDelete {
                node,
                service_id,
                cas,
                owner,
                takeover,
            } => {
                let key = (node.clone(), service_id.clone());
                let have = self.services.get(&key).map_or(0, |s| s.modify_index);
                expect(
                    &format!("service {service_id:?} on node {node:?}"),
                    have,
                    cas,
                )?;
                let cmd = Command::ServiceDeregister {
                    node,
                    service_id,
                    owner,
                    takeover,
                };
                self.txn_command(index, cmd, changed)?;
            }
            TxnCatalogOp::CheckSet { node, check, cas } => {
                let key = (node.clone(), check.check_id.clone());
                let have = self.checks.get(&key).map_or(0, |c| c.modify_index);
                expect(
                    &format!("check {:?} on node {node:?}", check.check_id),
                    have,
                    cas,
                )?;
                self.txn_command(
                    index,
                    Command::CheckRegister {
                        node: node.clone(),
                        check,
                    },
                    changed,
                )?;
                if let Some(c) = self.checks.get(&key) {
                    results.push(TxnResult::Check {
                        node,
                        check: c.clone(),
                    });
                }
            }
            TxnCatalogOp::CheckDelete {
                node,
                check_id,
                cas,
            } => {
                let key = (node.clone(), check_id.clone());
                let have = self.checks.get(&key).map_or(0, |c| c.modify_index);
                expect(&format!("check {check_id:?} on node {node:?}"), have, cas)?;
                self.txn_command(index, Command::CheckDeregister { node, check_id }, changed)?;
            }
            TxnCatalogOp::SessionDelete { id } => {
                if self.session(&id).is_none() {
                    return Err(format!("session {id:?} doesn't exist"));
                }
                self.txn_command(index, Command::SessionDestroy { id }, changed)?;
            }
        }
        Ok(())
    }
}

/// Uncommitted KV changes of a transaction over the stored keys.
struct Overlay<'a> {
    base: &'a BTreeMap<String, KvEntry>,
    changes: BTreeMap<String, Option<KvEntry>>,
}

impl Overlay<'_> {
    fn get(&self, key: &str) -> Option<&KvEntry> {
        match self.changes.get(key) {
            Some(change) => change.as_ref(),
            None => self.base.get(key),
        }
    }

    fn keys_under(&self, prefix: &str) -> Vec<String> {
        let base = self
            .base
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone());
        let changed = self
            .changes
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone());
        let all: std::collections::BTreeSet<String> = base.chain(changed).collect();
        all.into_iter().filter(|k| self.get(k).is_some()).collect()
    }

    fn modify_index(&self, key: &str) -> u64 {
        self.get(key).map_or(0, |e| e.modify_index)
    }

    fn expect_index(&self, key: &str, want: u64) -> Result<(), String> {
        let have = self.modify_index(key);
        if have != want {
            return Err(format!(
                "current modify index {have} != {want} for key {key:?}"
            ));
        }
        Ok(())
    }

    fn put(
        &mut self,
        index: u64,
        key: String,
        value: Vec<u8>,
        flags: u64,
    ) -> Result<KvEntry, String> {
        check_kv(&key, &value)?;
        let old = self.get(&key);
        let entry = KvEntry {
            create_index: old.map_or(index, |e| e.create_index),
            lock_index: old.map_or(0, |e| e.lock_index),
            key: key.clone(),
            value,
            flags,
            modify_index: index,
        };
        self.changes.insert(key, Some(entry.clone()));
        Ok(KvEntry {
            value: Vec::new(),
            ..entry
        })
    }

    fn run(&mut self, index: u64, op: TxnOp, results: &mut Vec<KvEntry>) -> Result<(), String> {
        match op {
            TxnOp::Set { key, value, flags } => results.push(self.put(index, key, value, flags)?),
            TxnOp::Cas {
                key,
                value,
                flags,
                index: want,
            } => {
                self.expect_index(&key, want)?;
                results.push(self.put(index, key, value, flags)?);
            }
            TxnOp::Get { key } => match self.get(&key) {
                Some(e) => results.push(e.clone()),
                None => return Err(format!("key {key:?} doesn't exist")),
            },
            TxnOp::GetTree { key } => {
                for k in self.keys_under(&key) {
                    results.extend(self.get(&k).cloned());
                }
            }
            TxnOp::CheckIndex { key, index: want } => {
                self.expect_index(&key, want)?;
                results.extend(self.get(&key).map(|e| KvEntry {
                    value: Vec::new(),
                    ..e.clone()
                }));
            }
            TxnOp::CheckNotExists { key } => {
                if self.get(&key).is_some() {
                    return Err(format!("key {key:?} exists"));
                }
            }
            TxnOp::Delete { key } => {
                self.changes.insert(key, None);
            }
            TxnOp::DeleteCas { key, index: want } => {
                self.expect_index(&key, want)?;
                self.changes.insert(key, None);
            }
            TxnOp::DeleteTree { key } => {
                for k in self.keys_under(&key) {
                    self.changes.insert(k, None);
                }
            }
            // `txn` sends these through `txn_all`, never here.
            TxnOp::Catalog(_) => return Err("a catalog operation in a KV overlay".into()),
        }
        Ok(())
    }
}

pub(crate) fn check_kv(key: &str, value: &[u8]) -> Result<(), String> {
    if key.is_empty() {
        return Err("KV key must not be empty".into());
    }
    // The HTTP API enforces the configured kv_max_value_size; this is the
    // ceiling every replica applies alike, whatever a server's config says.
    if value.len() > MAX_KV_VALUE_CEILING {
        return Err(format!(
            "value of {} bytes exceeds the {MAX_KV_VALUE_CEILING} byte limit",
            value.len(),
        ));
    }
    Ok(())
}
