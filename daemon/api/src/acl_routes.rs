//! What each request needs: the route and query mapped to the permission to
//! check, or to the filter its list answer goes through (body-borne targets:
//! `crate::decoded`).

use std::collections::HashMap;

use axum::http::Method;
use mesh_acl::{Access, Authorizer, Global, Resource};

use crate::Api;

/// One permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Named(Resource, String, Access),
    Global(Global, Access),
    KeyWritePrefix(String),
    Management,
}

/// How a list answer is cut down to what the caller may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Filter {
    /// An array of objects, each named by a field.
    Array(&'static str, Resource),
    /// An array of objects, each named by a field of an object field
    /// (`/v1/catalog/gateway-services`: `Service.Name`).
    ArrayNested(&'static str, &'static str, Resource),
    /// An object keyed by name (`/v1/catalog/services`).
    Keys(Resource),
    /// An object of objects, each named by a field (`/v1/agent/services`).
    Values(&'static str, Resource),
    /// Checks (array or object): by service if they have one, else by node.
    Checks,
    /// An array of key names (`?keys`).
    KeyNames,
}

#[derive(Debug, Default)]
pub(crate) struct Needs {
    pub checks: Vec<Check>,
    pub filter: Option<Filter>,
}

impl Needs {
    fn one(check: Check) -> Needs {
        Needs {
            checks: vec![check],
            filter: None,
        }
    }
    fn filter(filter: Filter) -> Needs {
        Needs {
            checks: Vec::new(),
            filter: Some(filter),
        }
    }
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

const SERVICE_KINDS: [&str; 6] = [
    "service-defaults",
    "service-router",
    "service-splitter",
    "service-resolver",
    "ingress-gateway",
    "terminating-gateway",
];

/// A config entry write by `authz`, for the RPC guard.
pub(crate) fn config_check_allowed(
    authz: &Authorizer,
    kind: &str,
    name: &str,
) -> Result<(), String> {
    match config_check(kind, name, Access::Write) {
        Some(check) if !allowed(authz, &check) => Err(format!(
            "Permission denied: the token lacks {}",
            check_text(&check)
        )),
        _ => Ok(()),
    }
}

pub(crate) fn config_check(kind: &str, name: &str, need: Access) -> Option<Check> {
    if kind == "service-intentions" {
        Some(Check::Named(Resource::Intention, name.into(), need))
    } else if SERVICE_KINDS.contains(&kind) {
        Some(Check::Named(Resource::Service, name.into(), need))
    } else if need == Access::Write {
        Some(Check::Global(Global::Mesh, Access::Write))
    } else {
        // proxy-defaults and mesh are readable by anyone, as in Consul.
        None
    }
}

/// The permissions a request needs, from its route and query. Routes whose
/// target is inside the body get theirs from the decoded body
/// (`crate::decoded`); here they need a management token, so a route that
/// skipped decoding fails closed.
pub(crate) fn needs(api: &Api, method: &Method, path: &str, q: &HashMap<String, String>) -> Needs {
    use Access::{Read, Write};
    use Check::{Global as G, Named};
    let Some(rest) = path.strip_prefix("/v1/") else {
        return Needs::default();
    };
    let segs: Vec<&str> = rest.split('/').collect();
    // Only agent routes need this agent's name.
    let node = || api.agent.node_name();
    let write = *method != Method::GET && *method != Method::HEAD;
    let access = if write { Write } else { Read };
    let qs = |k: &str| q.get(k).cloned().unwrap_or_default();
    match segs.as_slice() {
        ["status", ..] | ["catalog", "datacenters"] => Needs::default(),
        ["connect", "ca", "roots"] | ["agent", "connect", "ca", "roots"] => Needs::default(),
        // Login's credential is its bearer token; logout's, the token it ends.
        ["acl", "login" | "logout"] => Needs::default(),
        ["acl", "bootstrap"] | ["acl", "token", "self"] | ["internal", "acl", "authorizer"] => {
            Needs::default()
        }
        ["acl", ..] => Needs::one(G(Global::Acl, access)),
        ["operator", "keyring"] => Needs::one(G(Global::Keyring, access)),
        ["operator", ..] => Needs::one(G(Global::Operator, access)),
        ["snapshot"] => Needs::one(Check::Management),
        ["kv", key @ ..] => {
            let key = decode(&key.join("/"));
            match (write, q.contains_key("recurse"), q.contains_key("keys")) {
                (true, true, _) => Needs::one(Check::KeyWritePrefix(key)),
                (true, false, _) => Needs::one(Named(Resource::Key, key, Write)),
                (false, _, true) => Needs::filter(Filter::KeyNames),
                (false, true, _) => Needs::filter(Filter::Array("Key", Resource::Key)),
                (false, false, false) => Needs::one(Named(Resource::Key, key, Read)),
            }
        }
        ["event", "fire", name] => Needs::one(Named(Resource::Event, decode(name), Write)),
        ["event", "list"] => Needs::filter(Filter::Array("Name", Resource::Event)),
        ["query"] => Needs::filter(Filter::Array("Name", Resource::Query)),
        ["query", id] => {
            // Reads and deletes need the query's name; an unknown one is a 404.
            let id = decode(id);
            match api
                .state
                .read(|s| s.prepared_query(&id).map(|q| q.name.clone()))
            {
                Some(name) => Needs::one(Named(Resource::Query, name, access)),
                None => Needs::default(),
            }
        }
        ["query", key, "execute"] => {
            // A query with its own token runs with that token's rights
            // (checked when it runs): anyone may call it, as in Consul.
            let key = decode(key);
            match api.state.read(|s| {
                s.resolve_query(&key)
                    .map(|q| (q.service, q.token.is_empty()))
            }) {
                Some((service, true)) => Needs::one(Named(Resource::Service, service, Read)),
                _ => Needs::default(),
            }
        }
        ["query", key, "explain"] => {
            let key = decode(key);
            match api.state.read(|s| s.resolve_query(&key).map(|q| q.name)) {
                Some(name) => Needs::one(Named(Resource::Query, name, Read)),
                None => Needs::default(),
            }
        }
        ["coordinate", "datacenters"] => Needs::default(),
        ["coordinate", "nodes"] => Needs::filter(Filter::Array("Node", Resource::Node)),
        ["coordinate", "node", node] => Needs::one(Named(Resource::Node, decode(node), Read)),
        ["session", "list"] => Needs::filter(Filter::Array("Node", Resource::Session)),
        ["session", "node", node] => Needs::one(Named(Resource::Session, decode(node), Read)),
        ["session", "destroy" | "renew" | "info", id] => {
            // On the session's node; an unknown one changes and shows nothing.
            let id = decode(id);
            match api.state.read(|s| s.session(&id).map(|s| s.node.clone())) {
                Some(node) => Needs::one(Named(Resource::Session, node, access)),
                None => Needs::default(),
            }
        }
        ["catalog", "nodes"] => Needs::filter(Filter::Array("Node", Resource::Node)),
        ["catalog", "services"] => Needs::filter(Filter::Keys(Resource::Service)),
        ["catalog" | "health", "service" | "connect", name] | ["health", "checks", name] => {
            Needs::one(Named(Resource::Service, decode(name), Read))
        }
        ["catalog" | "health", "node", name] => {
            Needs::one(Named(Resource::Node, decode(name), Read))
        }
        // The gateway's links, each row shown only to who may read its service.
        ["catalog", "gateway-services", gateway] => Needs {
            checks: vec![Named(Resource::Service, decode(gateway), Read)],
            filter: Some(Filter::ArrayNested("Service", "Name", Resource::Service)),
        },
        // The ingress gateways exposing a service, each shown only to who
        // may read the gateway.
        ["health", "ingress", name] => Needs {
            checks: vec![Named(Resource::Service, decode(name), Read)],
            filter: Some(Filter::ArrayNested("Service", "Service", Resource::Service)),
        },
        ["health", "state", _] => Needs::filter(Filter::Checks),
        ["discovery-chain", name] => Needs::one(Named(Resource::Service, decode(name), Read)),
        ["config", kind] => {
            if *kind == "service-intentions" {
                Needs::filter(Filter::Array("Name", Resource::Intention))
            } else if SERVICE_KINDS.contains(kind) {
                Needs::filter(Filter::Array("Name", Resource::Service))
            } else {
                Needs::default()
            }
        }
        ["config", kind, name] => match config_check(kind, &decode(name), access) {
            Some(c) => Needs::one(c),
            None => Needs::default(),
        },
        ["connect", "intentions"] => {
            Needs::filter(Filter::Array("DestinationName", Resource::Intention))
        }
        ["connect", "intentions", "exact" | "check"] if !write => {
            Needs::one(Named(Resource::Intention, qs("destination"), access))
        }
        ["connect", "intentions", "exact"] if *method == Method::DELETE => {
            Needs::one(Named(Resource::Intention, qs("destination"), Write))
        }
        ["connect", "intentions", "match"] => {
            Needs::one(Named(Resource::Intention, qs("name"), Read))
        }
        ["connect", "intentions", id] => {
            let id = decode(id);
            let dest = api.state.read(|s| {
                s.intentions()
                    .find(|i| i.id == id)
                    .map(|i| i.destination.clone())
            });
            match dest {
                Some(dest) => Needs::one(Named(Resource::Intention, dest, access)),
                None => Needs::default(),
            }
        }
        ["connect", "ca", ..] => Needs::one(G(Global::Operator, access)),
        ["agent", "connect", "ca", "leaf", service] => {
            Needs::one(Named(Resource::Service, decode(service), Write))
        }
        ["agent", "connect", "proxy", id, "xds"] => {
            let id = decode(id);
            let destination = api.agent.local_proxy_destination(&id);
            Needs::one(Named(Resource::Service, destination.unwrap_or(id), Read))
        }
        ["agent", "connect", "proxy", id] => {
            // The snapshot carries the leaf (the identity) of the service the
            // proxy stands for: as for the leaf endpoint, that needs write.
            let id = decode(id);
            let destination = match q.get("node") {
                Some(n) => api.state.read(|s| {
                    s.service(n, &id)
                        .and_then(|s| s.proxy.as_ref())
                        .map(|p| p.destination_service_name.clone())
                }),
                None => api.agent.local_proxy_destination(&id),
            };
            Needs::one(Named(Resource::Service, destination.unwrap_or(id), Write))
        }
        ["agent", "members"] => Needs::filter(Filter::Array("Name", Resource::Node)),
        ["internal", "ui", "services"] => Needs::filter(Filter::Array("Name", Resource::Service)),
        ["agent", "self" | "metrics" | "monitor"] => {
            Needs::one(Named(Resource::Agent, node(), Read))
        }
        ["agent", "leave" | "reload" | "join" | "token", ..] => {
            Needs::one(Named(Resource::Agent, node(), Write))
        }
        ["agent", "force-leave", ..] => Needs::one(G(Global::Operator, Write)),
        ["agent", "maintenance"] => Needs::one(Named(Resource::Node, node(), Write)),
        ["agent", "config", "plan"] => Needs::one(Named(Resource::Agent, node(), Read)),
        ["agent", "health", "service", "id", id] => {
            let id = decode(id);
            let name = api.agent.local_service_name(&id).unwrap_or(id);
            Needs::one(Named(Resource::Service, name, Read))
        }
        ["agent", "health", "service", "name", name] => {
            Needs::one(Named(Resource::Service, decode(name), Read))
        }
        ["agent", "services"] => Needs::filter(Filter::Values("Service", Resource::Service)),
        ["agent", "checks"] => Needs::filter(Filter::Checks),
        ["agent", "service", op @ ..] => {
            let id = decode(op.last().copied().unwrap_or_default());
            let name = api.agent.local_service_name(&id).unwrap_or(id);
            Needs::one(Named(Resource::Service, name, access))
        }
        ["agent", "check", _, id] => match api.agent.local_check_service(&decode(id)) {
            Some(name) => Needs::one(Named(Resource::Service, name, Write)),
            None => Needs::one(Named(Resource::Node, node(), Write)),
        },
        // Anything else: only a management token (fail closed).
        _ => Needs::one(Check::Management),
    }
}

/// What one transaction operation needs: reads need read, a tree delete
/// write on the whole prefix, other writes write on the key; catalog
/// operations what the same change through the catalog API needs, named
/// by what is stored where the body does not say.
pub(crate) fn txn_check(op: &mesh_types::TxnOp, state: &mesh_state::State) -> Check {
    use mesh_types::{TxnCatalogOp as C, TxnOp};
    let service_name = |node: &str, id: &str| {
        state
            .service(node, id)
            .map_or_else(|| id.to_string(), |s| s.name.clone())
    };
    let check_target = |node: &str, check_id: &str, service_id: Option<&str>| {
        let service_id = service_id
            .map(str::to_string)
            .or_else(|| state.check(node, check_id).map(|c| c.service_id.clone()))
            .filter(|s| !s.is_empty());
        match service_id {
            Some(id) => Check::Named(Resource::Service, service_name(node, &id), Access::Write),
            None => Check::Named(Resource::Node, node.to_string(), Access::Write),
        }
    };
    match op {
        TxnOp::Catalog(c) => match c.as_ref() {
            C::NodeSet { node, .. } => {
                Check::Named(Resource::Node, node.name.clone(), Access::Write)
            }
            C::NodeGet { node } => Check::Named(Resource::Node, node.clone(), Access::Read),
            C::NodeDelete { node, .. } => Check::Named(Resource::Node, node.clone(), Access::Write),
            C::ServiceSet { service, .. } => {
                Check::Named(Resource::Service, service.name.clone(), Access::Write)
            }
            C::ServiceGet { node, service_id } => Check::Named(
                Resource::Service,
                service_name(node, service_id),
                Access::Read,
            ),
            C::ServiceDelete {
                node, service_id, ..
            } => Check::Named(
                Resource::Service,
                service_name(node, service_id),
                Access::Write,
            ),
            C::CheckSet { node, check, .. } => {
                check_target(node, &check.check_id, Some(&check.service_id))
            }
            C::CheckDelete { node, check_id, .. } => check_target(node, check_id, None),
            C::SessionDelete { id } => match state.session(id) {
                Some(s) => Check::Named(Resource::Session, s.node.clone(), Access::Write),
                None => Check::Named(Resource::Session, String::new(), Access::Write),
            },
        },
        TxnOp::Get { key }
        | TxnOp::GetTree { key }
        | TxnOp::CheckIndex { key, .. }
        | TxnOp::CheckNotExists { key } => Check::Named(Resource::Key, key.clone(), Access::Read),
        TxnOp::DeleteTree { key } => Check::KeyWritePrefix(key.clone()),
        TxnOp::Set { key, .. }
        | TxnOp::Cas { key, .. }
        | TxnOp::Delete { key }
        | TxnOp::DeleteCas { key, .. } => Check::Named(Resource::Key, key.clone(), Access::Write),
    }
}

pub(crate) fn allowed(authz: &Authorizer, check: &Check) -> bool {
    match check {
        Check::Named(r, name, need) => authz.allows(*r, name, *need),
        Check::Global(g, need) => authz.allows_global(*g, *need),
        Check::KeyWritePrefix(prefix) => authz.allows_key_write_prefix(prefix),
        Check::Management => authz.is_management(),
    }
}

pub(crate) fn check_text(check: &Check) -> String {
    match check {
        Check::Named(r, name, need) => format!("'{}:{}' on {name:?}", r.as_str(), need.as_str()),
        Check::Global(g, need) => format!("'{}:{}'", g.as_str(), need.as_str()),
        Check::KeyWritePrefix(prefix) => format!("'key:write' on every key under {prefix:?}"),
        Check::Management => "'acl:write' (a management token)".into(),
    }
}
