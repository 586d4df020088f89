//! Keeps the query path's catalog index current without touching the state
//! on every query: each worker holds watch receivers for the catalog tables
//! (an atomic load per query) and asks the shared cache for a fresh view only
//! after a change; the first to ask rebuilds it.

use std::sync::Arc;

use mesh_state::{StateStore, Table};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use crate::config::DnsAcl;
use crate::view::{built_from, View};

/// The shared, lazily rebuilt view of one state store.
pub(crate) struct Catalog {
    store: Arc<StateStore>,
    current: RwLock<Arc<View>>,
    /// Serialises rebuilds so a burst of queries after a write builds once.
    rebuilding: Mutex<()>,
}

impl Catalog {
    pub fn new(store: Arc<StateStore>) -> Catalog {
        let view = store.read(|state| View::build(state, None, None));
        Catalog {
            store,
            current: RwLock::new(Arc::new(view)),
            rebuilding: Mutex::new(()),
        }
    }

    /// The state store the views are built from.
    pub fn store(&self) -> Arc<StateStore> {
        self.store.clone()
    }

    /// A view at least as new as every write applied before the call,
    /// showing what `acl` may read (everything when ACLs are off).
    pub fn view(&self, acl: Option<&DnsAcl>) -> Arc<View> {
        let now = self.store.read(|s| built_from(s, acl));
        let view = self.current.read().clone();
        if view.built_from == now {
            return view;
        }
        let _one_builder = self.rebuilding.lock();
        let view = self.current.read().clone();
        if view.built_from == self.store.read(|s| built_from(s, acl)) {
            return view;
        }
        let started = std::time::Instant::now();
        let fresh = Arc::new(
            self.store
                .read(|state| View::build(state, Some(&view), acl)),
        );
        tracing::trace!(elapsed = ?started.elapsed(), services = fresh.services.len(), "dns: catalog view rebuilt");
        *self.current.write() = fresh.clone();
        fresh
    }

    /// Receivers that change with the tables a view depends on.
    pub fn watcher(&self) -> Watcher {
        let hub = self.store.hub();
        Watcher {
            tables: [
                hub.subscribe(Table::Nodes),
                hub.subscribe(Table::Services),
                hub.subscribe(Table::Checks),
                hub.subscribe(Table::Acl),
            ],
        }
    }
}

/// One worker's change detector for the catalog tables.
pub(crate) struct Watcher {
    tables: [watch::Receiver<u64>; 4],
}

impl Watcher {
    /// True if any table changed since the last call; marks the changes seen.
    /// The hub notifies after a write is applied, so a view fetched after
    /// this returns true includes the write.
    pub fn changed(&mut self) -> bool {
        let mut changed = false;
        for rx in &mut self.tables {
            // Err: the store is gone; nothing will change again.
            if rx.has_changed().unwrap_or(false) {
                rx.borrow_and_update();
                changed = true;
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use mesh_types::{Command, Node};

    use super::*;

    #[test]
    fn a_write_is_seen_by_the_watcher_and_the_next_view() {
        let store = Arc::new(StateStore::new());
        let catalog = Catalog::new(store.clone());
        let mut watcher = catalog.watcher();
        assert!(!watcher.changed());
        assert!(catalog.view(None).nodes.is_empty());

        let cmd = Command::NodeRegister {
            node: Node {
                name: "n1".into(),
                address: "10.0.0.1".into(),
                ..Node::default()
            },
        };
        store.apply_command(1, cmd);
        assert!(watcher.changed());
        assert!(!watcher.changed());
        let view = catalog.view(None);
        assert!(view.nodes.contains_key("n1"));
        // Unchanged state: the same view is handed out again.
        assert!(Arc::ptr_eq(&view, &catalog.view(None)));
    }
}
