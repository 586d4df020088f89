//! The permission a Raft command needs, for writes that arrive over the
//! server RPC port (client agents' anti-entropy, writes forwarded between
//! servers). The HTTP layer already checked its own requests; this keeps a
//! peer that skips it from writing what its token may not.

use mesh_acl::{Access, Authorizer, Global, Resource};
use mesh_state::State;
use mesh_types::Command;

use crate::acl_routes::{allowed as routes_allowed, check_text, config_check_allowed, txn_check};

fn need(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("Permission denied: the token lacks {}", what()))
    }
}

fn named(authz: &Authorizer, r: Resource, name: &str, access: Access) -> Result<(), String> {
    need(authz.allows(r, name, access), || {
        format!("'{}:{}' on {name:?}", r.as_str(), access.as_str())
    })
}

fn global(authz: &Authorizer, g: Global, access: Access) -> Result<(), String> {
    need(authz.allows_global(g, access), || {
        format!("'{}:{}'", g.as_str(), access.as_str())
    })
}

/// `Ok` if `authz` may propose `cmd`; otherwise what it lacks.
pub fn command_allowed(authz: &Authorizer, state: &State, cmd: &Command) -> Result<(), String> {
    use Access::Write;
    if authz.is_management() {
        return Ok(());
    }
    match cmd {
        Command::Noop | Command::CaLeafIssued { .. } | Command::AclBootstrap { .. } => Ok(()),
        Command::KvSet { key, .. } => named(authz, Resource::Key, key, Write),
        Command::KvDelete { key, recurse, .. } => match recurse {
            true => need(authz.allows_key_write_prefix(key), || {
                format!("'key:write' on every key under {key:?}")
            }),
            false => named(authz, Resource::Key, key, Write),
        },
        Command::Txn { ops } => ops.iter().try_for_each(|op| {
            let check = txn_check(op, state);
            need(routes_allowed(authz, &check), || check_text(&check))
        }),
        // An agent's own node: its anti-entropy writes need node write.
        Command::NodeRegister { node } => named(authz, Resource::Node, &node.name, Write),
        Command::NodeDeregister { node } => named(authz, Resource::Node, node, Write),
        Command::Register {
            node,
            skip_node_update,
            service,
            ..
        } => match (skip_node_update, service) {
            (true, Some(s)) if authz.allows(Resource::Service, &s.name, Write) => Ok(()),
            _ => named(authz, Resource::Node, &node.name, Write),
        },
        Command::ServiceRegister { node, .. }
        | Command::CheckRegister { node, .. }
        | Command::CheckDeregister { node, .. } => named(authz, Resource::Node, node, Write),
        Command::ServiceDeregister {
            node, service_id, ..
        } => {
            let name = state.service(node, service_id).map(|s| s.name.clone());
            match name {
                Some(name) if authz.allows(Resource::Service, &name, Write) => Ok(()),
                _ => named(authz, Resource::Node, node, Write),
            }
        }
        Command::ConfigSet { entry, .. } => config_check_allowed(authz, &entry.kind, &entry.name),
        Command::ConfigDelete { kind, name, .. } => config_check_allowed(authz, kind, name),
        Command::IntentionSet { intention, .. } => {
            named(authz, Resource::Intention, &intention.destination, Write)
        }
        Command::IntentionDelete { destination, .. }
        | Command::IntentionsReplace { destination, .. } => {
            named(authz, Resource::Intention, destination, Write)
        }
        Command::CaSet { .. } => global(authz, Global::Operator, Write),
        Command::AclPolicySet { .. }
        | Command::AclPolicyDelete { .. }
        | Command::AclTokenSet { .. }
        | Command::AclTokenDelete { .. }
        | Command::AclTokenSetLinked { .. }
        | Command::AclRoleSet { .. }
        | Command::AclRoleDelete { .. }
        | Command::AclAuthMethodSet { .. }
        | Command::AclAuthMethodDelete { .. }
        | Command::AclBindingRuleSet { .. }
        | Command::AclBindingRuleDelete { .. }
        | Command::AclTokensExpire { .. } => global(authz, Global::Acl, Write),
        Command::Restore { .. } => need(false, || "a management token".into()),
        Command::SessionCreate { session } => named(authz, Resource::Session, &session.node, Write),
        Command::SessionDestroy { id } | Command::SessionRenew { id } => {
            // An unknown session changes nothing; its node's write otherwise.
            match state.session(id) {
                Some(s) => named(authz, Resource::Session, &s.node, Write),
                None => Ok(()),
            }
        }
        Command::KvAcquire { key, session, .. } | Command::KvRelease { key, session, .. } => {
            named(authz, Resource::Key, key, Write)?;
            match state.session(session) {
                Some(s) => named(authz, Resource::Session, &s.node, Access::Read),
                None => Ok(()),
            }
        }
        Command::QuerySet { query } => {
            // Write on the new name and on the name it replaces (a query
            // with no name: on the empty name, `query_prefix ""`).
            let old = state.prepared_query(&query.id).map(|q| q.name.clone());
            [Some(query.name.clone()), old]
                .into_iter()
                .flatten()
                .try_for_each(|n| named(authz, Resource::Query, &n, Write))
        }
        Command::QueryDelete { id } => match state.prepared_query(id) {
            Some(q) => named(authz, Resource::Query, &q.name, Write),
            None => Ok(()),
        },
        Command::CoordinateBatch { updates } => updates
            .iter()
            .try_for_each(|u| named(authz, Resource::Node, &u.node, Write)),
        // Groups hold no groups (the type says so): this recurses once at most.
        Command::AllOrNothing { commands } => commands
            .iter()
            .try_for_each(|c| command_allowed(authz, state, &Command::from(c.clone()))),
    }
}

#[cfg(test)]
mod tests {
    use mesh_types::{GroupedCommand, Node};

    use super::*;

    #[test]
    fn an_agent_token_may_write_its_node_but_not_keys_or_acls() {
        let rules = mesh_acl::parse_rules("node \"n1\" { policy = \"write\" }").unwrap();
        let agent = Authorizer::from_rules([&rules], false);
        let state = State::default();
        let mine = Command::NodeRegister {
            node: Node {
                name: "n1".into(),
                ..Default::default()
            },
        };
        assert!(command_allowed(&agent, &state, &mine).is_ok());
        for cmd in [
            Command::NodeDeregister { node: "n2".into() },
            Command::KvSet {
                key: "k".into(),
                value: vec![],
                flags: 0,
                cas: None,
            },
            Command::AclTokenDelete {
                accessor_id: "x".into(),
            },
            Command::Restore { snapshot: vec![] },
            Command::AllOrNothing {
                commands: vec![GroupedCommand::ConfigDelete {
                    kind: "mesh".into(),
                    name: "mesh".into(),
                    owner: "api".into(),
                    takeover: false,
                }],
            },
        ] {
            let why = command_allowed(&agent, &state, &cmd).unwrap_err();
            assert!(why.contains("Permission denied"), "{cmd:?}: {why}");
        }
        assert!(command_allowed(
            &Authorizer::management(),
            &state,
            &Command::Restore { snapshot: vec![] }
        )
        .is_ok());
    }
}
