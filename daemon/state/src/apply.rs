use mesh_types::{decode_command, Command, KvEntry, Outcome, MAX_KV_VALUE_BYTES};

use crate::{State, Table};

impl State {
    /// Apply an encoded command at `index`. Deterministic: the same bytes at
    /// the same index give the same outcome and state on every replica.
    pub(crate) fn apply(&mut self, index: u64, bytes: &[u8]) -> (Outcome, Vec<Table>) {
        self.last_index = self.last_index.max(index);
        let cmd = match decode_command(bytes) {
            Ok(cmd) => cmd,
            Err(err) => return (Outcome::Rejected(err.to_string()), Vec::new()),
        };
        let outcome = self.apply_command(index, cmd);
        (outcome.0, outcome.1)
    }

    pub(crate) fn advance(&mut self, index: u64) {
        self.last_index = self.last_index.max(index);
    }

    fn apply_command(&mut self, index: u64, cmd: Command) -> (Outcome, Vec<Table>) {
        match cmd {
            Command::Noop => (Outcome::Done, Vec::new()),
            Command::KvSet {
                key,
                value,
                flags,
                cas,
            } => self.kv_set(index, key, value, flags, cas),
            Command::KvDelete { key, recurse, cas } => self.kv_delete(index, &key, recurse, cas),
            Command::NodeRegister { node } => self.node_register(index, node),
            Command::NodeDeregister { node } => self.node_deregister(index, &node),
            Command::ServiceRegister { node, service } => {
                self.service_register(index, node, service)
            }
            Command::ServiceDeregister { node, service_id } => {
                self.service_deregister(index, node, service_id)
            }
            Command::CheckRegister { node, check } => self.check_register(index, node, check),
            Command::CheckDeregister { node, check_id } => {
                self.check_deregister(index, node, check_id)
            }
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
    ) -> (Outcome, Vec<Table>) {
        if key.is_empty() {
            return rejected("KV key must not be empty");
        }
        if value.len() > MAX_KV_VALUE_BYTES {
            return rejected(format!(
                "value of {} bytes exceeds the {} byte limit",
                value.len(),
                MAX_KV_VALUE_BYTES
            ));
        }
        let existing = self.kv.get(&key);
        if let Some(want) = cas {
            let current = existing.map_or(0, |e| e.modify_index);
            if current != want {
                return (Outcome::Bool(false), Vec::new());
            }
        }
        let create_index = existing.map_or(index, |e| e.create_index);
        let lock_index = existing.map_or(0, |e| e.lock_index);
        self.kv.insert(
            key.clone(),
            KvEntry {
                key,
                value,
                flags,
                create_index,
                modify_index: index,
                lock_index,
            },
        );
        self.indexes.kv = index;
        (Outcome::Bool(true), vec![Table::Kv])
    }

    fn kv_delete(
        &mut self,
        index: u64,
        key: &str,
        recurse: bool,
        cas: Option<u64>,
    ) -> (Outcome, Vec<Table>) {
        if let Some(want) = cas {
            if recurse {
                return rejected("cas cannot be combined with recurse");
            }
            let current = self.kv.get(key).map_or(0, |e| e.modify_index);
            if current != want {
                return (Outcome::Bool(false), Vec::new());
            }
        }
        let removed = if recurse {
            let doomed: Vec<String> = self.kv_list(key).map(|e| e.key.clone()).collect();
            for k in &doomed {
                self.kv.remove(k);
            }
            !doomed.is_empty()
        } else {
            self.kv.remove(key).is_some()
        };
        if !removed {
            return (Outcome::Bool(true), Vec::new());
        }
        self.indexes.kv = index;
        (Outcome::Bool(true), vec![Table::Kv])
    }

    // === catalog ===

    fn node_register(&mut self, index: u64, mut node: mesh_types::Node) -> (Outcome, Vec<Table>) {
        if node.name.is_empty() {
            return rejected("node name must not be empty");
        }
        if let Some(old) = self.nodes.get(&node.name) {
            node.create_index = old.create_index;
            node.modify_index = old.modify_index;
            // Unchanged registrations (anti-entropy) must not wake watchers.
            if *old == node {
                return (Outcome::Done, Vec::new());
            }
        } else {
            node.create_index = index;
        }
        node.modify_index = index;
        self.nodes.insert(node.name.clone(), node);
        self.indexes.nodes = index;
        (Outcome::Done, vec![Table::Nodes])
    }

    fn node_deregister(&mut self, index: u64, name: &str) -> (Outcome, Vec<Table>) {
        if self.nodes.remove(name).is_none() {
            return (Outcome::Done, Vec::new());
        }
        self.services.retain(|(n, _), _| n != name);
        self.checks.retain(|(n, _), _| n != name);
        self.indexes.nodes = index;
        self.indexes.services = index;
        self.indexes.checks = index;
        (
            Outcome::Done,
            vec![Table::Nodes, Table::Services, Table::Checks],
        )
    }

    fn service_register(
        &mut self,
        index: u64,
        node: String,
        mut service: mesh_types::Service,
    ) -> (Outcome, Vec<Table>) {
        if !self.nodes.contains_key(&node) {
            return rejected(format!("node {node:?} is not registered"));
        }
        if service.name.is_empty() {
            return rejected("service name must not be empty");
        }
        if service.id.is_empty() {
            service.id = service.name.clone();
        }
        let key = (node, service.id.clone());
        if let Some(old) = self.services.get(&key) {
            service.create_index = old.create_index;
            service.modify_index = old.modify_index;
            if *old == service {
                return (Outcome::Done, Vec::new());
            }
        } else {
            service.create_index = index;
        }
        service.modify_index = index;
        self.services.insert(key, service);
        self.indexes.services = index;
        (Outcome::Done, vec![Table::Services])
    }

    fn service_deregister(
        &mut self,
        index: u64,
        node: String,
        service_id: String,
    ) -> (Outcome, Vec<Table>) {
        if self
            .services
            .remove(&(node.clone(), service_id.clone()))
            .is_none()
        {
            return (Outcome::Done, Vec::new());
        }
        self.checks
            .retain(|(n, _), c| !(n == &node && c.service_id == service_id));
        self.indexes.services = index;
        self.indexes.checks = index;
        (Outcome::Done, vec![Table::Services, Table::Checks])
    }

    fn check_register(
        &mut self,
        index: u64,
        node: String,
        mut check: mesh_types::HealthCheck,
    ) -> (Outcome, Vec<Table>) {
        if !self.nodes.contains_key(&node) {
            return rejected(format!("node {node:?} is not registered"));
        }
        if check.check_id.is_empty() {
            return rejected("check ID must not be empty");
        }
        if !check.service_id.is_empty() {
            match self.services.get(&(node.clone(), check.service_id.clone())) {
                Some(svc) => check.service_name = svc.name.clone(),
                None => {
                    return rejected(format!(
                        "service {:?} is not registered on node {node:?}",
                        check.service_id
                    ))
                }
            }
        }
        let key = (node, check.check_id.clone());
        if let Some(old) = self.checks.get(&key) {
            check.create_index = old.create_index;
            check.modify_index = old.modify_index;
            if *old == check {
                return (Outcome::Done, Vec::new());
            }
        } else {
            check.create_index = index;
        }
        check.modify_index = index;
        self.checks.insert(key, check);
        self.indexes.checks = index;
        (Outcome::Done, vec![Table::Checks])
    }

    fn check_deregister(
        &mut self,
        index: u64,
        node: String,
        check_id: String,
    ) -> (Outcome, Vec<Table>) {
        if self.checks.remove(&(node, check_id)).is_none() {
            return (Outcome::Done, Vec::new());
        }
        self.indexes.checks = index;
        (Outcome::Done, vec![Table::Checks])
    }
}

fn rejected(why: impl Into<String>) -> (Outcome, Vec<Table>) {
    (Outcome::Rejected(why.into()), Vec::new())
}
