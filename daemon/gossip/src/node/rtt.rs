//! Round-trip probes for network coordinates: one random alive member per
//! probe interval, answered only for members, counted only for our own
//! pending probes.

use std::net::SocketAddr;

use rand::Rng as _;
use tokio::time::Instant;

use super::Node;
use crate::identity::NodeId;
use crate::wire::{self, RttProbe};

/// A round-trip probe we sent.
pub(super) struct PendingProbe {
    to: SocketAddr,
    name: String,
    sent: Instant,
}

/// Unanswered probes remembered at most (older ones are dropped first).
const MAX_PENDING_PROBES: usize = 64;

impl Node {
    /// A probe from a member is answered with our coordinate; an answer
    /// to one of ours becomes a round-trip sample.
    pub(super) fn on_rtt_probe(&mut self, from: SocketAddr, plain: &[u8]) {
        let Some(probe) = RttProbe::decode(plain) else {
            tracing::debug!(%from, "dropped a malformed round-trip probe");
            return;
        };
        match probe {
            RttProbe::Ping { seq, coord } => {
                // Only members are answered: no reflector for strangers.
                let is_member = self
                    .foca
                    .iter_membership_state()
                    .any(|m| m.id().addr == from);
                if !is_member || coord.validate().is_err() {
                    return;
                }
                let own = self.coords.lock().vivaldi.coordinate().clone();
                self.send_rtt(from, &RttProbe::Pong { seq, coord: own });
            }
            RttProbe::Pong { seq, coord } => {
                let Some(pending) = self.rtt_pending.remove(&seq) else {
                    return;
                };
                if pending.to != from || coord.validate().is_err() {
                    return;
                }
                let rtt = pending.sent.elapsed();
                let mut view = self.coords.lock();
                if view.vivaldi.observe(&pending.name, &coord, rtt) {
                    view.peers.insert(pending.name, coord);
                }
            }
        }
    }

    fn send_rtt(&self, to: SocketAddr, probe: &RttProbe) {
        let enc = self.shared.encryption();
        self.shared
            .transport
            .send_packet(to, &wire::seal_rtt(enc.sealing(), &probe.encode()));
    }

    /// Probes one random alive member's round trip.
    pub(super) fn probe_rtt(&mut self) {
        if self.left {
            return;
        }
        let alive: Vec<&NodeId> = self
            .foca
            .iter_membership_state()
            .filter(|m| m.state() == foca::State::Alive)
            .map(|m| m.id())
            .collect();
        if alive.is_empty() {
            return;
        }
        let target = alive[rand::rng().random_range(0..alive.len())].clone();
        let now = Instant::now();
        let timeout = self.shared.timing.probe_interval * 2;
        self.rtt_pending
            .retain(|_, p| now.duration_since(p.sent) < timeout);
        if self.rtt_pending.len() >= MAX_PENDING_PROBES {
            return;
        }
        let seq: u64 = rand::rng().random();
        let own = self.coords.lock().vivaldi.coordinate().clone();
        self.send_rtt(target.addr, &RttProbe::Ping { seq, coord: own });
        self.rtt_pending.insert(
            seq,
            PendingProbe {
                to: target.addr,
                name: target.name,
                sent: now,
            },
        );
    }
}
