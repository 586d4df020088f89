//! What foca gossips about each node, and the "left gracefully" side channel.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::events::{EventLog, UserEvent};
use crate::Role;

/// A node's identity as foca sees it.
///
/// Foca's address is the node name, so a newer identity with the same name (a
/// restart, a tag change, a rejoin after a false failure) replaces the older
/// one; `version` decides which is newer.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct NodeId {
    pub name: String,
    pub addr: SocketAddr,
    pub role: Role,
    pub dc: String,
    pub tags: BTreeMap<String, String>,
    /// Starts at wall-clock milliseconds so a restarted process outranks its previous life.
    pub version: u64,
}

impl NodeId {
    /// The identity after a metadata change: same node, newer version.
    pub fn bumped(&self) -> NodeId {
        NodeId {
            version: self.version + 1,
            ..self.clone()
        }
    }

    /// Encoded size, used to keep identities well inside one packet.
    pub fn encoded_len(&self) -> usize {
        postcard::to_allocvec(self).map_or(usize::MAX, |v| v.len())
    }
}

impl foca::Identity for NodeId {
    type Addr = String;

    fn renew(&self) -> Option<Self> {
        Some(self.bumped())
    }

    fn addr(&self) -> String {
        self.name.clone()
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        // Newer version wins; ties (two processes sharing a name) break
        // deterministically so every member keeps the same one.
        (self.version, self.addr) > (adversary.version, adversary.addr)
    }
}

/// Largest encoded identity we accept; two of them plus updates must fit one packet.
pub(crate) const MAX_IDENTITY_LEN: usize = 400;

/// Which node versions announced a graceful leave (name -> version).
///
/// Foca only knows "down"; this is what lets us tell Left from Failed.
#[derive(Default)]
pub(crate) struct LeftSet {
    versions: HashMap<String, u64>,
    /// Names force-left with `prune`: dropped from the member list.
    pruned: HashMap<String, u64>,
    /// Set whenever an entry is added, so the member list is rebuilt.
    pub dirty: bool,
}

impl LeftSet {
    /// Records a leave; returns false if it was already known.
    pub fn insert(&mut self, name: &str, version: u64) -> bool {
        match self.versions.get(name) {
            Some(&known) if known >= version => false,
            _ => {
                self.versions.insert(name.to_owned(), version);
                self.dirty = true;
                true
            }
        }
    }

    /// Records a prune of a node that left; returns false if it was already known.
    pub fn prune(&mut self, name: &str, version: u64) -> bool {
        let fresh = self.insert(name, version);
        match self.pruned.get(name) {
            Some(&known) if known >= version => fresh,
            _ => {
                self.pruned.insert(name.to_owned(), version);
                self.dirty = true;
                true
            }
        }
    }

    /// Whether this exact identity was pruned from the member list.
    #[cfg(test)]
    pub fn is_pruned(&self, id: &NodeId) -> bool {
        self.pruned.get(&id.name) == Some(&id.version)
    }

    /// Whether the node by this name was pruned (entries of identities
    /// foca has replaced, e.g. by a rejoin, are dropped by `retain`).
    pub fn is_pruned_name(&self, name: &str) -> bool {
        self.pruned.contains_key(name)
    }

    /// Whether this exact identity left gracefully.
    pub fn has_left(&self, id: &NodeId) -> bool {
        self.versions.get(&id.name) == Some(&id.version)
    }

    pub fn entries(&self) -> Vec<(String, u64)> {
        self.versions.iter().map(|(n, v)| (n.clone(), *v)).collect()
    }

    /// Forgets leaves of identities foca no longer knows, keeping memory bounded.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, u64) -> bool) {
        self.versions.retain(|n, v| keep(n, *v));
        self.pruned.retain(|n, v| keep(n, *v));
    }
}

/// The custom broadcast a leaving node sends; carried by foca's gossip.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LeaveNotice {
    pub name: String,
    pub version: u64,
    /// Sent by `force-leave -prune`: members forget the node at once.
    pub prune: bool,
}

/// A leave notice as agents before `force-leave -prune` sent it.
#[derive(Deserialize)]
struct LeaveNoticeV1 {
    name: String,
    version: u64,
}

impl LeaveNotice {
    /// Reads a notice in either layout, so a rolling upgrade still tells
    /// Left from Failed both ways (older agents ignore the trailing flag).
    fn decode(data: &[u8]) -> Result<LeaveNotice, BadNotice> {
        postcard::from_bytes::<LeaveNotice>(data).or_else(|_| {
            let old: LeaveNoticeV1 = postcard::from_bytes(data).map_err(BadNotice)?;
            Ok(LeaveNotice {
                name: old.name,
                version: old.version,
                prune: false,
            })
        })
    }
}

/// Foca's handle on custom broadcasts: leave notices and user events. It
/// records each and decides whether to keep spreading it.
pub(crate) struct LeaveHandler {
    pub left: Arc<Mutex<LeftSet>>,
    pub events: Arc<Mutex<EventLog>>,
}

/// A broadcast in foca's queue: a newer leave notice for the same name
/// replaces an older one; events are unique by ID.
pub(crate) enum LeaveKey {
    Leave(LeaveNotice),
    Event([u8; 16]),
}

impl foca::Invalidates for LeaveKey {
    fn invalidates(&self, other: &Self) -> bool {
        match (self, other) {
            (LeaveKey::Leave(a), LeaveKey::Leave(b)) => a.name == b.name && a.version >= b.version,
            (LeaveKey::Event(a), LeaveKey::Event(b)) => a == b,
            _ => false,
        }
    }
}

/// A broadcast that is neither a leave notice nor an event (a different or newer protocol).
#[derive(Debug, thiserror::Error)]
#[error("malformed broadcast: {0}")]
pub(crate) struct BadNotice(postcard::Error);

impl foca::BroadcastHandler<NodeId> for LeaveHandler {
    type Key = LeaveKey;
    type Error = BadNotice;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&NodeId>,
    ) -> Result<Option<LeaveKey>, BadNotice> {
        // Only new information is passed on, otherwise it would circulate forever.
        if let Some(event) = UserEvent::decode(data) {
            let event = event.map_err(BadNotice)?;
            let id = event.id;
            return Ok(self
                .events
                .lock()
                .record(event)
                .then_some(LeaveKey::Event(id)));
        }
        let notice = LeaveNotice::decode(data)?;
        let mut left = self.left.lock();
        let fresh = if notice.prune {
            left.prune(&notice.name, notice.version)
        } else {
            left.insert(&notice.name, notice.version)
        };
        Ok(fresh.then_some(LeaveKey::Leave(notice)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::{BroadcastHandler, Identity};

    fn id(version: u64) -> NodeId {
        NodeId {
            name: "a".into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            role: Role::Client,
            dc: "dc1".into(),
            tags: BTreeMap::new(),
            version,
        }
    }

    #[test]
    fn newer_version_wins_and_renew_bumps() {
        let old = id(5);
        let new = old.renew().unwrap();
        assert_eq!(new.version, 6);
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
        assert_eq!(old.addr(), new.addr());
    }

    #[test]
    fn leave_notices_spread_once() {
        let set = Arc::new(Mutex::new(LeftSet::default()));
        let mut h = LeaveHandler {
            left: set.clone(),
            events: Arc::new(Mutex::new(EventLog::new())),
        };
        let data = postcard::to_allocvec(&LeaveNotice {
            name: "a".into(),
            version: 5,
            prune: false,
        })
        .unwrap();
        assert!(h.receive_item(&data, None).unwrap().is_some());
        assert!(h.receive_item(&data, None).unwrap().is_none());
        assert!(set.lock().has_left(&id(5)));
        assert!(!set.lock().has_left(&id(6)));
        assert!(h.receive_item(b"\xff\xff\xff", None).is_err());
        // The layout before `prune` still reads, as a plain leave.
        #[derive(Serialize)]
        struct Old<'a> {
            name: &'a str,
            version: u64,
        }
        let old = postcard::to_allocvec(&Old {
            name: "b",
            version: 2,
        })
        .unwrap();
        assert!(h.receive_item(&old, None).unwrap().is_some());
        assert!(set.lock().versions.get("b") == Some(&2));
        let pruned = postcard::to_allocvec(&LeaveNotice {
            name: "a".into(),
            version: 5,
            prune: true,
        })
        .unwrap();
        // A prune of a known leave is news once, then spreads no further.
        assert!(h.receive_item(&pruned, None).unwrap().is_some());
        assert!(h.receive_item(&pruned, None).unwrap().is_none());
        assert!(set.lock().is_pruned(&id(5)));
    }

    #[test]
    fn events_spread_once_and_read_as_nobody_by_older_agents() {
        let set = Arc::new(Mutex::new(LeftSet::default()));
        let events = Arc::new(Mutex::new(EventLog::new()));
        let mut h = LeaveHandler {
            left: set.clone(),
            events: events.clone(),
        };
        let event = UserEvent {
            id: [7; 16],
            name: "deploy".into(),
            payload: b"v2".to_vec(),
            node_filter: String::new(),
            service_filter: "web".into(),
            tag_filter: String::new(),
            ltime: 9,
        };
        let data = event.encode();
        assert!(h.receive_item(&data, None).unwrap().is_some());
        assert!(h.receive_item(&data, None).unwrap().is_none());
        assert_eq!(events.lock().recent(), vec![event]);
        assert_eq!(
            events.lock().next_time(),
            10,
            "the clock witnesses received times"
        );
        // An agent that predates events decodes one as the empty name (no
        // member has it) or not at all; either way no member is marked left.
        if let Ok(notice) = postcard::from_bytes::<LeaveNoticeV1>(&data) {
            assert_eq!(notice.name, "");
        }
        assert!(set.lock().entries().is_empty());
        assert!(
            h.receive_item(&[0, 1, 0xff], None).is_err(),
            "a malformed event is an error"
        );
    }
}
