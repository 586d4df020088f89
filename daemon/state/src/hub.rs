use tokio::sync::watch;

/// The tables a blocking query can wait on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Kv,
    Nodes,
    Services,
    Checks,
    Config,
    Ca,
    /// ACL tokens and policies.
    Acl,
    Sessions,
    /// Prepared queries.
    Queries,
    /// Network coordinates.
    Coordinates,
}

const TABLES: [Table; 10] = [
    Table::Kv,
    Table::Nodes,
    Table::Services,
    Table::Checks,
    Table::Config,
    Table::Ca,
    Table::Acl,
    Table::Sessions,
    Table::Queries,
    Table::Coordinates,
];

/// Wakes waiters when a table changes or the applied index moves. Waiters
/// subscribe before reading, so no change between read and wait is missed.
pub struct WatchHub {
    tables: [watch::Sender<u64>; TABLES.len()],
    applied: watch::Sender<u64>,
}

impl Default for WatchHub {
    fn default() -> Self {
        WatchHub {
            tables: std::array::from_fn(|_| watch::channel(0).0),
            applied: watch::channel(0).0,
        }
    }
}

impl WatchHub {
    /// A receiver that changes whenever `table` changes.
    pub fn subscribe(&self, table: Table) -> watch::Receiver<u64> {
        self.tables[slot(table)].subscribe()
    }

    /// A receiver of the last applied log index.
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Wait until the applied index reaches `index`.
    pub async fn wait_applied(&self, index: u64) {
        let mut rx = self.applied.subscribe();
        // Err only if the sender is gone, which cannot happen while self lives.
        let _ = rx.wait_for(|applied| *applied >= index).await;
    }

    pub(crate) fn notify(&self, index: u64, changed: &[Table]) {
        for table in changed {
            self.tables[slot(*table)].send_replace(index);
        }
        // Health answers (which wait on Checks) join nodes, services and
        // checks: an instance registered or removed without any check
        // changing is still a change to them.
        let joins = changed
            .iter()
            .any(|t| matches!(t, Table::Nodes | Table::Services));
        if joins && !changed.contains(&Table::Checks) {
            self.tables[slot(Table::Checks)].send_replace(index);
        }
        self.applied.send_replace(index);
    }

    pub(crate) fn notify_all(&self, index: u64) {
        self.notify(index, &TABLES);
    }
}

fn slot(table: Table) -> usize {
    table as usize
}
