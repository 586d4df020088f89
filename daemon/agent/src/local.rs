//! Agent-local services and checks: what this agent is authoritative for.
//! Registrations are kept here (and in the data dir, so they survive a
//! restart), their checks run here, and anti-entropy copies them to the catalog.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use mesh_api::ApiError;
use mesh_checks::{CheckDefinition, CheckRunner, CheckUpdate, RunnerOptions};
use mesh_types::{CheckStatus, Command, HealthCheck, Node, Proxy, Service, Upstream};
use mesh_wire::{parse_body, ServiceDef};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};

/// First port handed to a sidecar registered without one (Consul's default range).
const SIDECAR_MIN_PORT: u16 = 21000;
/// Consul's check ID for node maintenance mode.
pub(crate) const NODE_MAINTENANCE: &str = "_node_maintenance";
/// Consul's check ID prefix for a service's maintenance mode.
pub(crate) const SERVICE_MAINTENANCE_PREFIX: &str = "_service_maintenance:";
/// The check's notes when no reason is given.
const DEFAULT_MAINTENANCE_REASON: &str = "Maintenance mode is on; no reason was given.";

pub(crate) struct LocalService {
    pub service: Service,
    /// The registration body, replayed after a restart.
    pub definition: Value,
}

/// A validated service registration, ready to commit.
pub(crate) struct PreparedService {
    service: Service,
    checks: Vec<CheckDefinition>,
    sidecar: Option<Service>,
}

pub(crate) struct LocalCheck {
    pub check: HealthCheck,
    pub runner: Option<CheckRunner>,
    pub deregister_after: Option<Duration>,
    /// Standalone checks are persisted on their own; service checks with their service.
    pub definition: Option<Value>,
}

#[derive(Default)]
pub(crate) struct Inner {
    pub services: BTreeMap<String, LocalService>,
    pub checks: BTreeMap<String, LocalCheck>,
    /// Service IDs and check IDs removed locally, still to remove from the catalog.
    pub removed_services: BTreeSet<(String, String)>,
    pub removed_checks: BTreeSet<String>,
    /// Changed since the last sync (None = the node itself / node-level checks).
    pub dirty: BTreeSet<Option<String>>,
    /// Bumped on every local change; anti-entropy reports the version it pushed.
    pub version: u64,
}

/// What one anti-entropy pass pushes.
pub(crate) struct SyncBatch {
    pub commands: Vec<Command>,
    /// What it covers (None: the node and its own checks).
    pub dirty: BTreeSet<Option<String>>,
    /// The local version it brings the catalog to.
    pub version: u64,
}

pub(crate) struct LocalState {
    inner: Mutex<Inner>,
    /// Wakes anti-entropy.
    pub changed: Notify,
    /// The version after every local change, for any number of watchers
    /// (proxy snapshots, managed sidecars); `changed` wakes anti-entropy only.
    pub versions: tokio::sync::watch::Sender<u64>,
    persist_path: Option<PathBuf>,
    updates: mpsc::Sender<CheckUpdate>,
    options: RunnerOptions,
}

fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(e.to_string())
}

impl LocalState {
    pub(crate) fn new(
        persist_path: Option<PathBuf>,
        updates: mpsc::Sender<CheckUpdate>,
        options: RunnerOptions,
    ) -> Self {
        LocalState {
            inner: Mutex::new(Inner::default()),
            changed: Notify::new(),
            versions: tokio::sync::watch::channel(0).0,
            persist_path,
            updates,
            options,
        }
    }

    fn mark(&self, inner: &mut Inner, what: Option<String>) {
        inner.version += 1;
        inner.dirty.insert(what);
        self.changed.notify_one();
        self.versions.send_replace(inner.version);
    }

    /// Register (or replace) a service from its Consul JSON definition,
    /// with its checks and, if asked, its sidecar proxy.
    pub(crate) fn add_service(&self, definition: Value, owner: &str) -> Result<String, ApiError> {
        let prepared = self.prepare_service(&definition, owner)?;
        let id = self.commit_service(prepared, definition)?;
        self.persist();
        Ok(id)
    }

    /// Apply many registrations and removals, then persist once (a config
    /// reload of many services would otherwise rewrite the file per service).
    pub(crate) fn apply_batch(
        &self,
        remove: &[String],
        add: &[(Value, String)],
    ) -> Result<(), ApiError> {
        for id in remove {
            self.remove_service_inner(id);
        }
        let mut result = Ok(());
        for (def, owner) in add {
            let done = self
                .prepare_service(def, owner)
                .and_then(|p| self.commit_service(p, def.clone()));
            if let Err(e) = done {
                result = Err(e);
                break;
            }
        }
        self.persist();
        result
    }

    /// Everything `add_service` checks, without changing anything.
    pub(crate) fn prepare_service(
        &self,
        definition: &Value,
        owner: &str,
    ) -> Result<PreparedService, ApiError> {
        let def: ServiceDef = parse_body(definition.to_string().as_bytes(), "service definition")?;
        let service = def.to_service(owner)?;
        let mut checks = Vec::new();
        let values = def.check_values();
        for (i, v) in values.iter().enumerate() {
            let default_id = if values.len() == 1 {
                format!("service:{}", service.id)
            } else {
                format!("service:{}:{}", service.id, i + 1)
            };
            let mut cd = CheckDefinition::from_consul_json(v, &default_id).map_err(bad)?;
            cd.service_id = service.id.clone();
            if cd.name.is_empty() {
                cd.name = format!("Service '{}' check", service.name);
            }
            checks.push(cd);
        }
        let sidecar = match def
            .connect
            .as_ref()
            .and_then(|c| c.sidecar_service.as_ref())
        {
            Some(sc) => Some(self.sidecar_for(&service, sc, owner)?),
            None => None,
        };
        Ok(PreparedService {
            service,
            checks,
            sidecar,
        })
    }

    fn commit_service(
        &self,
        prepared: PreparedService,
        definition: Value,
    ) -> Result<String, ApiError> {
        let PreparedService {
            service,
            checks,
            sidecar,
        } = prepared;
        let mut inner = self.inner.lock();
        let id = service.id.clone();
        self.remove_service_locked(&mut inner, &id, false);
        for cd in checks {
            self.add_check_locked(&mut inner, cd, &service.name, None)?;
        }
        if let Some(sc) = sidecar {
            let sid = sc.id.clone();
            self.remove_service_locked(&mut inner, &sid, false);
            inner
                .removed_services
                .remove(&(sid.clone(), sc.owner.clone()));
            inner.services.insert(
                sid.clone(),
                LocalService {
                    service: sc,
                    definition: Value::Null,
                },
            );
            self.mark(&mut inner, Some(sid));
        }
        inner.removed_services.retain(|(s, _)| s != &id);
        inner.services.insert(
            id.clone(),
            LocalService {
                service,
                definition,
            },
        );
        self.mark(&mut inner, Some(id.clone()));
        drop(inner);
        Ok(id)
    }

    fn sidecar_for(
        &self,
        service: &Service,
        sc: &ServiceDef,
        owner: &str,
    ) -> Result<Service, ApiError> {
        let mut proxy_def =
            sc.to_service_lenient(&format!("{}-sidecar-proxy", service.name), owner)?;
        proxy_def.id = if sc.id.is_empty() {
            format!("{}-sidecar-proxy", service.id)
        } else {
            sc.id.clone()
        };
        proxy_def.kind = "connect-proxy".into();
        if proxy_def.port == 0 {
            proxy_def.port = self.free_sidecar_port();
        }
        // The sidecar block's upstreams and opaque config carry over.
        let (upstreams, config_json): (Vec<Upstream>, String) = proxy_def.proxy.take().map_or_else(
            || (Vec::new(), "{}".into()),
            |p| (p.upstreams, p.config_json),
        );
        proxy_def.proxy = Some(Proxy {
            destination_service_name: service.name.clone(),
            destination_service_id: service.id.clone(),
            local_service_address: "127.0.0.1".into(),
            local_service_port: service.port,
            upstreams,
            config_json,
        });
        Ok(proxy_def)
    }

    fn free_sidecar_port(&self) -> u16 {
        let inner = self.inner.lock();
        let used: BTreeSet<u16> = inner.services.values().map(|s| s.service.port).collect();
        (SIDECAR_MIN_PORT..)
            .find(|p| !used.contains(p))
            .unwrap_or(SIDECAR_MIN_PORT)
    }

    /// Who registered service `id` on this agent (`api`, `file:...`).
    pub(crate) fn service_owner(&self, id: &str) -> Option<String> {
        self.inner
            .lock()
            .services
            .get(id)
            .map(|s| s.service.owner.clone())
    }

    /// Deregister a service, its checks and its managed sidecar.
    pub(crate) fn remove_service(&self, id: &str) -> bool {
        let found = self.remove_service_inner(id);
        if found {
            self.persist();
        }
        found
    }

    fn remove_service_inner(&self, id: &str) -> bool {
        let mut inner = self.inner.lock();
        let found = self.remove_service_locked(&mut inner, id, true);
        let sidecar = format!("{id}-sidecar-proxy");
        if inner
            .services
            .get(&sidecar)
            .is_some_and(|s| s.definition.is_null())
        {
            self.remove_service_locked(&mut inner, &sidecar, true);
        }
        found
    }

    fn remove_service_locked(&self, inner: &mut Inner, id: &str, record: bool) -> bool {
        let Some(old) = inner.services.remove(id) else {
            return false;
        };
        inner.checks.retain(|_, c| c.check.service_id != id);
        if record {
            inner.version += 1;
            inner
                .removed_services
                .insert((id.to_string(), old.service.owner.clone()));
            self.changed.notify_one();
            self.versions.send_replace(inner.version);
        }
        true
    }

    /// Register a standalone check from its Consul JSON definition.
    pub(crate) fn add_check(&self, definition: Value) -> Result<String, ApiError> {
        let mut cd = CheckDefinition::from_consul_json(&definition, "").map_err(bad)?;
        if cd.id.is_empty() {
            return Err(ApiError::bad_request("Missing check name"));
        }
        if cd.name.is_empty() {
            cd.name = cd.id.clone();
        }
        let mut inner = self.inner.lock();
        let service_name = if cd.service_id.is_empty() {
            String::new()
        } else {
            match inner.services.get(&cd.service_id) {
                Some(s) => s.service.name.clone(),
                None => {
                    return Err(ApiError::bad_request(format!(
                        "ServiceID {:?} does not exist",
                        cd.service_id
                    )))
                }
            }
        };
        let id = cd.id.clone();
        self.add_check_locked(&mut inner, cd, &service_name, Some(definition))?;
        drop(inner);
        self.persist();
        Ok(id)
    }

    fn add_check_locked(
        &self,
        inner: &mut Inner,
        cd: CheckDefinition,
        service_name: &str,
        definition: Option<Value>,
    ) -> Result<(), ApiError> {
        let check = HealthCheck {
            check_id: cd.id.clone(),
            name: cd.name.clone(),
            status: cd.status,
            notes: cd.notes.clone(),
            output: String::new(),
            service_id: cd.service_id.clone(),
            service_name: service_name.to_string(),
            check_type: cd.type_name().to_string(),
            ..Default::default()
        };
        let deregister_after = cd.deregister_critical_service_after;
        let runner = CheckRunner::spawn(cd, &self.options, self.updates.clone()).map_err(bad)?;
        let dirty = if check.service_id.is_empty() {
            None
        } else {
            Some(check.service_id.clone())
        };
        inner.removed_checks.remove(&check.check_id);
        inner.checks.insert(
            check.check_id.clone(),
            LocalCheck {
                check,
                runner: Some(runner),
                deregister_after,
                definition,
            },
        );
        self.mark(inner, dirty);
        Ok(())
    }

    /// A node check the agent itself keeps (no runner, not persisted: it
    /// is set again at every start), synced to the catalog like any other.
    pub(crate) fn set_builtin_check(
        &self,
        id: &str,
        name: &str,
        status: CheckStatus,
        output: String,
    ) {
        let mut inner = self.inner.lock();
        if let Some(c) = inner.checks.get(id) {
            if c.check.status == status && c.check.output == output {
                return;
            }
        }
        let check = HealthCheck {
            check_id: id.to_string(),
            name: name.to_string(),
            status,
            output,
            notes: "kept by the agent itself; informational".into(),
            check_type: "mesh".into(),
            ..Default::default()
        };
        inner.removed_checks.remove(id);
        inner.checks.insert(
            id.to_string(),
            LocalCheck {
                check,
                runner: None,
                deregister_after: None,
                definition: None,
            },
        );
        self.mark(&mut inner, None);
    }

    /// Puts the node (no `service_id`) or one service in maintenance mode,
    /// as Consul does: a critical check that takes it out of healthy
    /// answers. Persisted, so maintenance survives an agent restart.
    pub(crate) fn enable_maintenance(
        &self,
        service_id: Option<&str>,
        reason: &str,
    ) -> Result<(), ApiError> {
        let (id, name, service_name) = {
            let inner = self.inner.lock();
            match service_id {
                None => (
                    NODE_MAINTENANCE.to_string(),
                    "Node Maintenance Mode",
                    String::new(),
                ),
                Some(sid) => {
                    let service = inner.services.get(sid).ok_or_else(|| {
                        ApiError::new(
                            axum::http::StatusCode::NOT_FOUND,
                            format!("Unknown service ID {sid:?}"),
                        )
                    })?;
                    (
                        format!("{SERVICE_MAINTENANCE_PREFIX}{sid}"),
                        "Service Maintenance Mode",
                        service.service.name.clone(),
                    )
                }
            }
        };
        let notes = if reason.is_empty() {
            DEFAULT_MAINTENANCE_REASON.to_string()
        } else {
            reason.to_string()
        };
        let mut inner = self.inner.lock();
        let check = HealthCheck {
            check_id: id.clone(),
            name: name.to_string(),
            status: CheckStatus::Critical,
            notes,
            service_id: service_id.unwrap_or_default().to_string(),
            service_name,
            check_type: "maintenance".into(),
            ..Default::default()
        };
        let dirty = service_id.map(str::to_string);
        inner.removed_checks.remove(&id);
        inner.checks.insert(
            id,
            LocalCheck {
                check,
                runner: None,
                deregister_after: None,
                definition: Some(json!({"Maintenance": {
                    "ServiceID": service_id.unwrap_or_default(),
                    "Reason": reason,
                }})),
            },
        );
        self.mark(&mut inner, dirty);
        drop(inner);
        self.persist();
        Ok(())
    }

    /// Ends maintenance mode of the node or a service; true if it was on.
    pub(crate) fn disable_maintenance(&self, service_id: Option<&str>) -> Result<bool, ApiError> {
        let id = match service_id {
            None => NODE_MAINTENANCE.to_string(),
            Some(sid) => {
                if !self.inner.lock().services.contains_key(sid) {
                    return Err(ApiError::new(
                        axum::http::StatusCode::NOT_FOUND,
                        format!("Unknown service ID {sid:?}"),
                    ));
                }
                format!("{SERVICE_MAINTENANCE_PREFIX}{sid}")
            }
        };
        Ok(self.remove_check(&id))
    }

    /// Deregister a check.
    pub(crate) fn remove_check(&self, id: &str) -> bool {
        let mut inner = self.inner.lock();
        let found = inner.checks.remove(id).is_some();
        if found {
            inner.version += 1;
            inner.removed_checks.insert(id.to_string());
            self.changed.notify_one();
            self.versions.send_replace(inner.version);
        }
        drop(inner);
        if found {
            self.persist();
        }
        found
    }

    /// Record a check result; wakes anti-entropy only on a change.
    pub(crate) fn apply_update(&self, update: CheckUpdate) {
        let mut inner = self.inner.lock();
        let Some(local) = inner.checks.get_mut(&update.check_id) else {
            return;
        };
        if local.check.status == update.status && local.check.output == update.output {
            return;
        }
        local.check.status = update.status;
        local.check.output = update.output;
        let dirty = (!local.check.service_id.is_empty()).then(|| local.check.service_id.clone());
        self.mark(&mut inner, dirty);
    }

    /// TTL check update (`/v1/agent/check/pass|warn|fail|update/:id`).
    pub(crate) fn ttl_update(
        &self,
        id: &str,
        status: CheckStatus,
        output: String,
    ) -> Result<(), ApiError> {
        let inner = self.inner.lock();
        let local = inner.checks.get(id).ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                format!("Unknown check ID {id:?}"),
            )
        })?;
        match &local.runner {
            Some(r) => r.ttl_update(status, output).map_err(bad),
            None => Err(ApiError::bad_request(format!(
                "check {id:?} is not a TTL check"
            ))),
        }
    }

    /// Services whose critical check has been critical longer than its
    /// `DeregisterCriticalServiceAfter`.
    pub(crate) fn expired_services(&self, now: Instant) -> Vec<String> {
        let inner = self.inner.lock();
        inner
            .checks
            .values()
            .filter(|c| !c.check.service_id.is_empty())
            .filter_map(|c| {
                let after = c.deregister_after?;
                let since = c.runner.as_ref()?.critical_since()?;
                (now.duration_since(since) >= after).then(|| c.check.service_id.clone())
            })
            .collect()
    }

    fn persist(&self) {
        let Some(path) = &self.persist_path else {
            return;
        };
        let inner = self.inner.lock();
        let services: Vec<Value> = inner
            .services
            .values()
            .filter(|s| !s.definition.is_null())
            .map(|s| json!({"owner": s.service.owner, "definition": s.definition}))
            .collect();
        let checks: Vec<Value> = inner
            .checks
            .values()
            .filter_map(|c| c.definition.clone())
            .collect();
        drop(inner);
        let body = json!({"services": services, "checks": checks}).to_string();
        let tmp = path.with_extension("tmp");
        if let Err(e) = std::fs::write(&tmp, body).and_then(|_| std::fs::rename(&tmp, path)) {
            tracing::error!(path = %path.display(), error = %e, "saving local services");
        }
    }

    /// Bumped on every local change.
    pub(crate) fn version(&self) -> u64 {
        self.inner.lock().version
    }

    /// The registration of service `id`.
    pub(crate) fn service(&self, id: &str) -> Option<Service> {
        self.inner
            .lock()
            .services
            .get(id)
            .map(|s| s.service.clone())
    }

    /// The registrations of `ids`, in order, holding the lock once.
    pub(crate) fn services_of<'a>(
        &self,
        ids: impl Iterator<Item = Option<&'a str>>,
    ) -> Vec<Option<Service>> {
        let inner = self.inner.lock();
        ids.map(|id| inner.services.get(id?).map(|s| s.service.clone()))
            .collect()
    }

    /// Every registered service, by ID.
    pub(crate) fn services(&self) -> BTreeMap<String, Service> {
        let inner = self.inner.lock();
        inner
            .services
            .iter()
            .map(|(id, s)| (id.clone(), s.service.clone()))
            .collect()
    }

    /// Every check, with the tags of the service it belongs to.
    pub(crate) fn checks_with_tags(&self) -> Vec<(String, HealthCheck, Vec<String>)> {
        let inner = self.inner.lock();
        inner
            .checks
            .iter()
            .map(|(id, c)| {
                let tags = inner
                    .services
                    .get(&c.check.service_id)
                    .map(|s| s.service.tags.clone())
                    .unwrap_or_default();
                (id.clone(), c.check.clone(), tags)
            })
            .collect()
    }

    /// The name of the service check `check_id` belongs to, if any.
    pub(crate) fn check_service_name(&self, check_id: &str) -> Option<String> {
        let inner = self.inner.lock();
        let service_id = &inner.checks.get(check_id)?.check.service_id;
        inner
            .services
            .get(service_id)
            .map(|s| s.service.name.clone())
    }

    /// Each service's owner and the definition it was registered from
    /// (null for a sidecar, which comes and goes with its service).
    pub(crate) fn owners_and_definitions(&self) -> BTreeMap<String, (String, Value)> {
        let inner = self.inner.lock();
        inner
            .services
            .iter()
            .map(|(id, s)| (id.clone(), (s.service.owner.clone(), s.definition.clone())))
            .collect()
    }

    /// Sidecars registered from a `sidecar_service` block, with the
    /// proxy config (JSON text) of each.
    pub(crate) fn sidecars(&self) -> BTreeMap<String, Option<String>> {
        let inner = self.inner.lock();
        inner
            .services
            .iter()
            .filter(|(_, s)| s.service.kind == "connect-proxy" && s.definition.is_null())
            .map(|(id, s)| {
                let config = s.service.proxy.as_ref().map(|p| p.config_json.clone());
                (id.clone(), config)
            })
            .collect()
    }

    /// Ingress and terminating gateways registered from config files (the
    /// agent's own, or mesh.d), with the proxy config (JSON text) of each.
    pub(crate) fn declared_gateways(&self) -> BTreeMap<String, Option<String>> {
        let inner = self.inner.lock();
        inner
            .services
            .iter()
            .filter(|(_, s)| {
                matches!(
                    s.service.kind.as_str(),
                    "ingress-gateway" | "terminating-gateway"
                ) && s.service.owner.starts_with("file:")
            })
            .map(|(id, s)| {
                let config = s.service.proxy.as_ref().map(|p| p.config_json.clone());
                (id.clone(), config)
            })
            .collect()
    }

    /// Marks everything for the next anti-entropy pass.
    pub(crate) fn mark_all_dirty(&self) {
        self.inner.lock().dirty.insert(None);
        self.changed.notify_one();
    }

    /// What the next anti-entropy pass pushes for `node` (everything when
    /// `full`, else what changed), and the version it brings the catalog to.
    /// What it takes is handed back with [`LocalState::retry_sync`] if the
    /// push fails.
    pub(crate) fn take_sync(&self, node: &Node, full: bool) -> SyncBatch {
        let mut inner = self.inner.lock();
        let version = inner.version;
        let dirty: BTreeSet<Option<String>> = if full {
            std::iter::once(None)
                .chain(inner.services.keys().cloned().map(Some))
                .collect()
        } else {
            std::mem::take(&mut inner.dirty)
        };
        let mut commands = Vec::new();
        for (id, owner) in &inner.removed_services {
            commands.push(Command::ServiceDeregister {
                node: node.name.clone(),
                service_id: id.clone(),
                owner: owner.clone(),
                takeover: false,
            });
        }
        for id in &inner.removed_checks {
            commands.push(Command::CheckDeregister {
                node: node.name.clone(),
                check_id: id.clone(),
            });
        }
        for what in &dirty {
            let checks_of = |service_id: &str| -> Vec<HealthCheck> {
                inner
                    .checks
                    .values()
                    .filter(|c| c.check.service_id == service_id)
                    .map(|c| c.check.clone())
                    .collect()
            };
            let (service, checks) = match what {
                None => (None, checks_of("")),
                Some(id) => match inner.services.get(id) {
                    Some(s) => (Some(s.service.clone()), checks_of(id)),
                    None => continue,
                },
            };
            commands.push(Command::Register {
                node: node.clone(),
                skip_node_update: what.is_some(),
                service,
                checks,
                takeover: false,
            });
        }
        inner.removed_services.clear();
        inner.removed_checks.clear();
        SyncBatch {
            commands,
            dirty,
            version,
        }
    }

    /// A failed push: everything it carried goes out again next time.
    pub(crate) fn retry_sync(&self, dirty: BTreeSet<Option<String>>) {
        self.inner.lock().dirty.extend(dirty);
    }

    /// Re-register what was persisted before a restart.
    pub(crate) fn restore(&self) {
        let Some(path) = &self.persist_path else {
            return;
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            return;
        };
        let saved: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "local services file is unreadable; ignoring it");
                return;
            }
        };
        for s in saved["services"].as_array().into_iter().flatten() {
            let owner = s["owner"].as_str().unwrap_or(mesh_types::DEFAULT_OWNER);
            if let Err(e) = self.add_service(s["definition"].clone(), owner) {
                tracing::warn!(error = %e, "restoring a local service");
            }
        }
        for c in saved["checks"].as_array().into_iter().flatten() {
            if let Some(m) = c.get("Maintenance") {
                let service = m["ServiceID"].as_str().filter(|s| !s.is_empty());
                let reason = m["Reason"].as_str().unwrap_or_default();
                if let Err(e) = self.enable_maintenance(service, reason) {
                    tracing::warn!(error = %e, "restoring maintenance mode");
                }
                continue;
            }
            if let Err(e) = self.add_check(c.clone()) {
                tracing::warn!(error = %e, "restoring a local check");
            }
        }
    }
}
