//! User events (Consul's `consul event`): small named messages spread by
//! gossip to every member, each kept in a ring of recent events.
//!
//! Events ride foca's custom broadcasts beside leave notices. A broadcast
//! that starts with [`EVENT_TAG`] is an event; agents that predate events
//! read those two bytes as a leave notice for the empty name, which names
//! no member.

use std::collections::{HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The first bytes of an event broadcast (see the module comment).
pub(crate) const EVENT_TAG: [u8; 2] = [0, 1];

/// The most an encoded event (name, payload and filters) may take, as
/// Serf's user event limit: it must ride in a gossip packet.
pub const MAX_EVENT_BYTES: usize = 512;

/// How many recent events each member keeps (Consul keeps 256).
pub const EVENT_BUFFER: usize = 256;

/// How many event IDs a member remembers to drop repeats.
const SEEN_IDS: usize = 4 * EVENT_BUFFER;

/// One event as fired and as every member keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEvent {
    /// Random, unique per event.
    pub id: [u8; 16],
    pub name: String,
    pub payload: Vec<u8>,
    /// Regular expressions (Go syntax in Consul; Rust `regex` here) on
    /// the node name, a service name and one of its tags; empty matches all.
    pub node_filter: String,
    pub service_filter: String,
    pub tag_filter: String,
    /// Lamport time of the pool when fired.
    pub ltime: u64,
}

/// What a caller fires; the ID and Lamport time are assigned on firing.
#[derive(Clone, Debug, Default)]
pub struct NewEvent {
    pub name: String,
    pub payload: Vec<u8>,
    pub node_filter: String,
    pub service_filter: String,
    pub tag_filter: String,
}

impl UserEvent {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = EVENT_TAG.to_vec();
        out.extend(postcard::to_allocvec(self).expect("encoding to a Vec cannot fail"));
        out
    }

    pub(crate) fn decode(data: &[u8]) -> Option<Result<UserEvent, postcard::Error>> {
        let body = data.strip_prefix(&EVENT_TAG[..])?;
        Some(postcard::from_bytes(body))
    }

    /// Consul's blocking index for an event list ending in this event: the
    /// two halves of the ID XORed (what `consul watch -type event` expects).
    pub fn index(&self) -> u64 {
        let (hi, lo) = self.id.split_at(8);
        let hi = u64::from_be_bytes(hi.try_into().expect("8 bytes"));
        let lo = u64::from_be_bytes(lo.try_into().expect("8 bytes"));
        hi ^ lo
    }
}

/// The events this member has seen.
pub(crate) struct EventLog {
    clock: u64,
    recent: VecDeque<UserEvent>,
    seen: HashSet<[u8; 16]>,
    seen_order: VecDeque<[u8; 16]>,
    changed: watch::Sender<u64>,
}

impl EventLog {
    pub(crate) fn new() -> Self {
        EventLog {
            clock: 0,
            recent: VecDeque::new(),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            changed: watch::channel(0).0,
        }
    }

    /// The Lamport time for a new event.
    pub(crate) fn next_time(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Records `event`; false if it was seen before (then it is not spread again).
    pub(crate) fn record(&mut self, event: UserEvent) -> bool {
        if !self.seen.insert(event.id) {
            return false;
        }
        self.seen_order.push_back(event.id);
        if self.seen_order.len() > SEEN_IDS {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.clock = self.clock.max(event.ltime);
        self.recent.push_back(event);
        if self.recent.len() > EVENT_BUFFER {
            self.recent.pop_front();
        }
        self.changed.send_modify(|n| *n += 1);
        true
    }

    pub(crate) fn recent(&self) -> Vec<UserEvent> {
        self.recent.iter().cloned().collect()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}
