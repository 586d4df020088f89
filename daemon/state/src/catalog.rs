//! Applying catalog (nodes, services, checks) and config-entry commands.

use mesh_types::{ConfigEntry, HealthCheck, Node, Outcome, Service, CONFIG_KINDS, DEFAULT_OWNER};

use crate::apply::{rejected, Applied};
use crate::{State, Table};

pub(crate) fn owner_of(owner: &str) -> &str {
    if owner.is_empty() {
        DEFAULT_OWNER
    } else {
        owner
    }
}

pub(crate) fn conflict(what: String, owner: &str) -> Applied {
    (
        Outcome::Conflict {
            what,
            owner: owner.to_string(),
        },
        Vec::new(),
    )
}

impl State {
    /// Bump the per-name index of every service on `node`.
    fn touch_node_services(&mut self, node: &str, index: u64) {
        let names: Vec<String> = self.node_services(node).map(|s| s.name.clone()).collect();
        for name in names {
            self.service_index.insert(name, index);
        }
    }

    /// Catalog registration; validates everything before changing anything.
    pub(crate) fn register(
        &mut self,
        index: u64,
        mut node: Node,
        skip_node_update: bool,
        service: Option<Service>,
        checks: Vec<HealthCheck>,
        takeover: bool,
    ) -> Applied {
        if node.name.is_empty() {
            return rejected("Must provide node");
        }
        let mut service = service;
        if let Some(svc) = service.as_mut() {
            if svc.name.is_empty() {
                return rejected("Must provide service name");
            }
            if svc.id.is_empty() {
                svc.id = svc.name.clone();
            }
            svc.owner = owner_of(&svc.owner).to_string();
            if let Some(old) = self.services.get(&(node.name.clone(), svc.id.clone())) {
                if owner_of(&old.owner) != svc.owner && !takeover {
                    return conflict(
                        format!("service {:?} on node {:?}", svc.id, node.name),
                        owner_of(&old.owner),
                    );
                }
            }
        }
        let mut checks = checks;
        for check in checks.iter_mut() {
            if check.check_id.is_empty() {
                return rejected("Missing check ID");
            }
            if check.service_id.is_empty() {
                continue;
            }
            let name = match &service {
                Some(s) if s.id == check.service_id => Some(s.name.clone()),
                _ => self
                    .services
                    .get(&(node.name.clone(), check.service_id.clone()))
                    .map(|s| s.name.clone()),
            };
            match name {
                Some(name) => check.service_name = name,
                None => {
                    return rejected(format!(
                        "Unknown service ID {:?} for check ID {:?}",
                        check.service_id, check.check_id
                    ))
                }
            }
        }

        let mut changed = Vec::new();
        // Node.
        let existing = self.nodes.get(&node.name).cloned();
        if !(skip_node_update && existing.is_some()) {
            match &existing {
                Some(old) => {
                    node.create_index = old.create_index;
                    node.modify_index = old.modify_index;
                    if node.id.is_empty() {
                        node.id = old.id.clone();
                    }
                }
                None => node.create_index = index,
            }
            if existing.as_ref() != Some(&node) {
                node.modify_index = index;
                let name = node.name.clone();
                self.nodes.insert(name.clone(), node.clone());
                self.indexes.nodes = index;
                self.touch_node_services(&name, index);
                changed.push(Table::Nodes);
            }
        }
        let node_name = node.name;
        // Service.
        if let Some(mut svc) = service {
            let key = (node_name.clone(), svc.id.clone());
            let old = self.services.get(&key).cloned();
            match &old {
                Some(o) => {
                    svc.create_index = o.create_index;
                    svc.modify_index = o.modify_index;
                }
                None => svc.create_index = index,
            }
            if old.as_ref() != Some(&svc) {
                svc.modify_index = index;
                if let Some(o) = &old {
                    if o.name != svc.name {
                        self.unindex_name(&o.name, &key, index);
                    }
                }
                self.by_name
                    .entry(svc.name.clone())
                    .or_default()
                    .insert(key.clone());
                self.service_index.insert(svc.name.clone(), index);
                self.services.insert(key, svc);
                self.indexes.services = index;
                changed.push(Table::Services);
            }
        }
        // Checks.
        for mut check in checks {
            let key = (node_name.clone(), check.check_id.clone());
            let old = self.checks.get(&key);
            match old {
                Some(o) => {
                    check.create_index = o.create_index;
                    check.modify_index = o.modify_index;
                }
                None => check.create_index = index,
            }
            if old != Some(&check) {
                check.modify_index = index;
                if check.service_name.is_empty() {
                    self.touch_node_services(&node_name, index);
                } else {
                    self.service_index.insert(check.service_name.clone(), index);
                }
                self.checks.insert(key, check);
                self.indexes.checks = index;
                if !changed.contains(&Table::Checks) {
                    changed.push(Table::Checks);
                }
            }
        }
        (Outcome::Done, changed)
    }

    /// Register a service or check on a node that must already exist.
    pub(crate) fn register_on_existing(
        &mut self,
        index: u64,
        node: String,
        service: Option<Service>,
        checks: Vec<HealthCheck>,
    ) -> Applied {
        let Some(existing) = self.nodes.get(&node).cloned() else {
            return rejected(format!("node {node:?} is not registered"));
        };
        self.register(index, existing, true, service, checks, false)
    }

    fn unindex_name(&mut self, name: &str, key: &(String, String), index: u64) {
        if let Some(set) = self.by_name.get_mut(name) {
            set.remove(key);
            if set.is_empty() {
                self.by_name.remove(name);
            }
        }
        self.service_index.insert(name.to_string(), index);
    }

    pub(crate) fn node_deregister(&mut self, index: u64, name: &str) -> Applied {
        if self.nodes.remove(name).is_none() {
            return (Outcome::Done, Vec::new());
        }
        let doomed: Vec<(String, String)> = self
            .services
            .keys()
            .filter(|(n, _)| n == name)
            .cloned()
            .collect();
        for key in doomed {
            if let Some(svc) = self.services.remove(&key) {
                self.unindex_name(&svc.name, &key, index);
            }
        }
        self.checks.retain(|(n, _), _| n != name);
        self.indexes.nodes = index;
        self.indexes.services = index;
        self.indexes.checks = index;
        let mut changed = vec![Table::Nodes, Table::Services, Table::Checks];
        if self.coordinate_forget(index, name) {
            changed.push(Table::Coordinates);
        }
        (Outcome::Done, changed)
    }

    pub(crate) fn service_deregister(
        &mut self,
        index: u64,
        node: &str,
        service_id: &str,
        owner: &str,
        takeover: bool,
    ) -> Applied {
        let key = (node.to_string(), service_id.to_string());
        let Some(old) = self.services.get(&key) else {
            return (Outcome::Done, Vec::new());
        };
        if owner_of(&old.owner) != owner_of(owner) && !takeover {
            return conflict(
                format!("service {service_id:?} on node {node:?}"),
                owner_of(&old.owner),
            );
        }
        let svc = self.services.remove(&key).expect("checked above");
        self.unindex_name(&svc.name, &key, index);
        self.checks
            .retain(|(n, _), c| !(n == node && c.service_id == service_id));
        self.indexes.services = index;
        self.indexes.checks = index;
        (Outcome::Done, vec![Table::Services, Table::Checks])
    }

    pub(crate) fn check_deregister(
        &mut self,
        index: u64,
        node: String,
        check_id: String,
    ) -> Applied {
        let Some(check) = self.checks.remove(&(node.clone(), check_id)) else {
            return (Outcome::Done, Vec::new());
        };
        if check.service_name.is_empty() {
            self.touch_node_services(&node, index);
        } else {
            self.service_index.insert(check.service_name, index);
        }
        self.indexes.checks = index;
        (Outcome::Done, vec![Table::Checks])
    }

    // === config entries ===

    pub(crate) fn config_set(
        &mut self,
        index: u64,
        mut entry: ConfigEntry,
        cas: Option<u64>,
        takeover: bool,
    ) -> Applied {
        if !CONFIG_KINDS.contains(&entry.kind.as_str()) {
            return rejected(format!(
                "invalid config entry kind {:?} (one of: {})",
                entry.kind,
                CONFIG_KINDS.join(", ")
            ));
        }
        if entry.name.is_empty() {
            return rejected("config entry Name is required");
        }
        if entry.kind == "service-intentions" {
            return rejected("service-intentions entries are stored as intentions");
        }
        entry.owner = owner_of(&entry.owner).to_string();
        let key = (entry.kind.clone(), entry.name.clone());
        let old = self.config.get(&key);
        if let Some(want) = cas {
            if old.map_or(0, |e| e.modify_index) != want {
                return (Outcome::Bool(false), Vec::new());
            }
        }
        if let Some(o) = old {
            if owner_of(&o.owner) != entry.owner && !takeover {
                return conflict(
                    format!("config entry {}/{}", entry.kind, entry.name),
                    owner_of(&o.owner),
                );
            }
            entry.create_index = o.create_index;
            entry.modify_index = o.modify_index;
            if *o == entry {
                return (Outcome::Bool(true), Vec::new());
            }
        } else {
            entry.create_index = index;
        }
        entry.modify_index = index;
        self.config.insert(key, entry);
        self.indexes.config = index;
        (Outcome::Bool(true), vec![Table::Config])
    }

    pub(crate) fn config_delete(
        &mut self,
        index: u64,
        kind: &str,
        name: &str,
        owner: &str,
        takeover: bool,
    ) -> Applied {
        let key = (kind.to_string(), name.to_string());
        let Some(old) = self.config.get(&key) else {
            return (Outcome::Bool(true), Vec::new());
        };
        if owner_of(&old.owner) != owner_of(owner) && !takeover {
            return conflict(format!("config entry {kind}/{name}"), owner_of(&old.owner));
        }
        self.config.remove(&key);
        self.indexes.config = index;
        (Outcome::Bool(true), vec![Table::Config])
    }
}
