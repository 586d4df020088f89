//! Sessions and the KV locks held under them. Everything here is applied
//! alike on every replica; only the lock delays (wall-clock, per server)
//! are kept outside the replicated state and read before a write is
//! proposed, as Consul does.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mesh_types::{CheckStatus, KvEntry, Outcome, Session, SessionBehavior};
use serde::{Deserialize, Serialize};

use crate::apply::{rejected, Applied};
use crate::{State, Table};

/// The session tables. Must stay the last field of [`State`] (snapshot
/// format 3 compatibility: it is appended).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionTables {
    pub sessions: BTreeMap<String, Session>,
    /// Locked key → the session holding it.
    pub holders: BTreeMap<String, String>,
    pub index: u64,
    #[serde(skip)]
    pub delays: LockDelays,
}

/// Keys in their lock delay, and until when, from the time this server
/// applied the invalidation: not replicated state, so never compared.
#[derive(Debug, Clone, Default)]
pub(crate) struct LockDelays(BTreeMap<String, Instant>);

impl PartialEq for LockDelays {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for LockDelays {}

/// How many keys one server remembers lock delays for; the oldest are
/// forgotten first past it.
const MAX_LOCK_DELAYS: usize = 65_536;

// === reads ===

impl State {
    pub fn session(&self, id: &str) -> Option<&Session> {
        self.sessions.sessions.get(id)
    }

    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.sessions.values()
    }

    /// The session holding `key`'s lock, if any.
    pub fn lock_holder(&self, key: &str) -> Option<&str> {
        self.sessions.holders.get(key).map(String::as_str)
    }

    /// How long `key` stays in its lock delay, if it is in one.
    pub fn lock_delay_left(&self, key: &str) -> Option<Duration> {
        let until = self.sessions.delays.0.get(key)?;
        until.checked_duration_since(Instant::now())
    }

    /// Why a session for `node` bound to `checks` cannot be created (or
    /// must be invalidated): the node or a check is missing, or a check is
    /// critical.
    fn session_unhealthy<'a>(
        &self,
        node: &str,
        mut checks: impl Iterator<Item = &'a String>,
    ) -> Option<String> {
        if !self.nodes.contains_key(node) {
            return Some(format!("Missing node registration {node:?}"));
        }
        checks.find_map(
            |id| match self.checks.get(&(node.to_string(), id.clone())) {
                None => Some(format!("Missing check {id:?} registration")),
                Some(c) if c.status == CheckStatus::Critical => {
                    Some(format!("Check {id:?} is in critical state"))
                }
                Some(_) => None,
            },
        )
    }
}

// === writes ===

impl State {
    pub(crate) fn session_create(&mut self, index: u64, mut session: Session) -> Applied {
        if self.sessions.sessions.contains_key(&session.id) {
            return rejected(format!("session {:?} already exists", session.id));
        }
        if let Some(why) = self.session_unhealthy(&session.node, session.checks()) {
            return rejected(why);
        }
        session.create_index = index;
        session.modify_index = index;
        self.sessions.sessions.insert(session.id.clone(), session);
        self.sessions.index = index;
        (Outcome::Done, vec![Table::Sessions])
    }

    pub(crate) fn session_destroy(&mut self, index: u64, id: &str) -> Applied {
        (Outcome::Done, self.invalidate(index, id))
    }

    /// Ends session `id`: its locks are released or their keys deleted,
    /// and each key enters the session's lock delay.
    fn invalidate(&mut self, index: u64, id: &str) -> Vec<Table> {
        let Some(session) = self.sessions.sessions.remove(id) else {
            return Vec::new();
        };
        self.sessions.index = index;
        let mut changed = vec![Table::Sessions];
        if self.drop_queries_of_session(index, id) {
            changed.push(Table::Queries);
        }
        let held: Vec<String> = self
            .sessions
            .holders
            .iter()
            .filter(|(_, s)| *s == id)
            .map(|(k, _)| k.clone())
            .collect();
        let delay = Duration::from_millis(session.lock_delay_ms);
        for key in &held {
            self.sessions.holders.remove(key);
            if !delay.is_zero() {
                self.remember_delay(key, Instant::now() + delay);
            }
            match session.behavior {
                SessionBehavior::Release => {
                    if let Some(e) = self.kv.get_mut(key) {
                        e.modify_index = index;
                    }
                }
                SessionBehavior::Delete => {
                    self.kv.remove(key);
                }
            }
        }
        if held.is_empty() {
            return changed;
        }
        self.indexes.kv = index;
        changed.push(Table::Kv);
        changed
    }

    fn remember_delay(&mut self, key: &str, until: Instant) {
        let delays = &mut self.sessions.delays.0;
        let now = Instant::now();
        delays.retain(|_, t| *t > now);
        if delays.len() >= MAX_LOCK_DELAYS {
            if let Some(oldest) = delays
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone())
            {
                delays.remove(&oldest);
            }
        }
        delays.insert(key.to_string(), until);
    }

    /// After a change to `node` or its checks: sessions on it whose node
    /// left or whose bound check is gone or critical are invalidated.
    pub(crate) fn sessions_follow_health(&mut self, index: u64, node: &str) -> Vec<Table> {
        let doomed: Vec<String> = self
            .sessions
            .sessions
            .values()
            .filter(|s| s.node == node)
            .filter(|s| self.session_unhealthy(&s.node, s.checks()).is_some())
            .map(|s| s.id.clone())
            .collect();
        let mut changed = Vec::new();
        for id in doomed {
            for t in self.invalidate(index, &id) {
                if !changed.contains(&t) {
                    changed.push(t);
                }
            }
        }
        changed
    }

    /// `?acquire=`: sets the key and takes its lock for `session`, unless
    /// another session holds it (`false`). The lock delay is checked by
    /// the API before proposing, since it is wall-clock time.
    pub(crate) fn kv_acquire(
        &mut self,
        index: u64,
        key: String,
        value: Vec<u8>,
        flags: u64,
        session: String,
    ) -> Applied {
        if let Err(why) = crate::apply::check_kv(&key, &value) {
            return rejected(why);
        }
        if !self.sessions.sessions.contains_key(&session) {
            return rejected(format!("invalid session {session:?}"));
        }
        let again = match self.sessions.holders.get(&key) {
            Some(holder) if *holder != session => return (Outcome::Bool(false), Vec::new()),
            Some(_) => true,
            None => false,
        };
        let old = self.kv.get(&key);
        let entry = KvEntry {
            create_index: old.map_or(index, |e| e.create_index),
            lock_index: old.map_or(0, |e| e.lock_index) + u64::from(!again),
            key: key.clone(),
            value,
            flags,
            modify_index: index,
        };
        self.kv.insert(key.clone(), entry);
        self.sessions.holders.insert(key, session);
        self.indexes.kv = index;
        (Outcome::Bool(true), vec![Table::Kv])
    }

    /// `?release=`: sets the key and gives up its lock, if `session` holds it.
    pub(crate) fn kv_release(
        &mut self,
        index: u64,
        key: String,
        value: Vec<u8>,
        flags: u64,
        session: String,
    ) -> Applied {
        if let Err(why) = crate::apply::check_kv(&key, &value) {
            return rejected(why);
        }
        if self.sessions.holders.get(&key) != Some(&session) {
            return (Outcome::Bool(false), Vec::new());
        }
        self.sessions.holders.remove(&key);
        if let Some(e) = self.kv.get_mut(&key) {
            e.value = value;
            e.flags = flags;
            e.modify_index = index;
        }
        self.indexes.kv = index;
        (Outcome::Bool(true), vec![Table::Kv])
    }

    /// Deleted keys hold no lock.
    pub(crate) fn forget_locks_of_removed_keys(&mut self) {
        if self.sessions.holders.is_empty() {
            return;
        }
        let kv = &self.kv;
        self.sessions.holders.retain(|k, _| kv.contains_key(k));
    }
}
