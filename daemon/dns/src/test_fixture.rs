//! A catalog for unit tests, written through `StateStore::apply` as Raft
//! would write it.

use std::collections::BTreeMap;

use mesh_state::StateStore;
use mesh_types::{CheckStatus, Command, HealthCheck, Node, Service};

use crate::view::View;

/// A catalog written through `StateStore::apply`, as Raft would.
pub(crate) struct Fixture {
    pub store: StateStore,
    index: u64,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture {
            store: StateStore::new(),
            index: 0,
        }
    }

    /// Apply a command that may be refused.
    pub fn try_apply(&mut self, cmd: Command) -> mesh_types::Outcome {
        self.index += 1;
        self.store.apply_command(self.index, cmd)
    }

    pub fn apply(&mut self, cmd: Command) {
        self.index += 1;
        let outcome = self.store.apply_command(self.index, cmd.clone());
        assert_eq!(outcome, mesh_types::Outcome::Done, "{cmd:?}");
    }

    pub fn node(&mut self, name: &str, address: &str, meta: &[(&str, &str)]) -> &mut Self {
        let meta: BTreeMap<_, _> = meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.apply(Command::NodeRegister {
            node: Node {
                name: name.into(),
                address: address.into(),
                meta,
                ..Node::default()
            },
        });
        self
    }

    pub fn service(
        &mut self,
        node: &str,
        id: &str,
        name: &str,
        address: &str,
        port: u16,
        tags: &[&str],
    ) -> &mut Self {
        self.apply(Command::ServiceRegister {
            node: node.into(),
            service: Service {
                id: id.into(),
                name: name.into(),
                address: address.into(),
                port,
                tags: tags.iter().map(|t| t.to_string()).collect(),
                ..Service::default()
            },
        });
        self
    }

    pub fn proxy(
        &mut self,
        node: &str,
        id: &str,
        name: &str,
        port: u16,
        dest: Option<&str>,
    ) -> &mut Self {
        let meta = dest
            .map(|d| [("destination_service".to_string(), d.to_string())].into())
            .unwrap_or_default();
        self.apply(Command::ServiceRegister {
            node: node.into(),
            service: Service {
                id: id.into(),
                name: name.into(),
                port,
                kind: "connect-proxy".into(),
                meta,
                ..Service::default()
            },
        });
        self
    }

    pub fn check(
        &mut self,
        node: &str,
        id: &str,
        service_id: &str,
        status: CheckStatus,
    ) -> &mut Self {
        self.apply(Command::CheckRegister {
            node: node.into(),
            check: HealthCheck {
                check_id: id.into(),
                service_id: service_id.into(),
                status,
                ..HealthCheck::default()
            },
        });
        self
    }

    pub fn view(&self) -> View {
        self.store.read(|state| View::build(state, None, None))
    }
}
