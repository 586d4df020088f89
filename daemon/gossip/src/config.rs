//! What a gossip node is told at start: who it is and how fast to talk.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use crate::{GossipError, Keyring, Role};

/// Everything needed to start a gossip node.
#[derive(Clone, Debug)]
pub struct GossipConfig {
    /// Node name; unique in the pool, and the key a restarted node is recognised by.
    pub name: String,
    /// UDP and TCP are bound on this same address; port 0 picks a free port.
    pub bind: SocketAddr,
    /// Address other members use to reach us; defaults to the bound address.
    pub advertise: Option<SocketAddr>,
    /// Datacenter name carried in our identity.
    pub dc: String,
    /// Server or client agent.
    pub role: Role,
    /// Free-form metadata gossiped with our identity (Serf tags).
    pub tags: BTreeMap<String, String>,
    /// When set, every packet and push/pull frame is AES-GCM encrypted.
    pub keyring: Option<Keyring>,
    /// Refuse plaintext from others (`encrypt_verify_incoming`).
    pub verify_incoming: bool,
    /// Encrypt what we send (`encrypt_verify_outgoing`).
    pub verify_outgoing: bool,
    /// Where key changes persist (the data dir's `keyring`).
    pub keyring_file: Option<PathBuf>,
    /// Protocol timing.
    pub timing: Timing,
}

impl GossipConfig {
    /// A client in `dc1` with LAN timing, no tags and no encryption.
    pub fn new(name: impl Into<String>, bind: SocketAddr) -> Self {
        Self {
            name: name.into(),
            bind,
            advertise: None,
            dc: "dc1".to_owned(),
            role: Role::Client,
            tags: BTreeMap::new(),
            keyring: None,
            verify_incoming: true,
            verify_outgoing: true,
            keyring_file: None,
            timing: Timing::lan(),
        }
    }
}

/// SWIM timing knobs, named after their memberlist counterparts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How often a random member is probed.
    pub probe_interval: Duration,
    /// How long to wait for a direct ack before asking others to probe.
    pub probe_timeout: Duration,
    /// How many members are asked to probe indirectly.
    pub indirect_checks: usize,
    /// Suspicion lasts `suspicion_mult * max(1, log10 N) * probe_interval`.
    pub suspicion_mult: u32,
    /// Each update is retransmitted `retransmit_mult * ceil(log10(N + 1))` times.
    pub retransmit_mult: u32,
    /// How often queued updates are gossiped.
    pub gossip_interval: Duration,
    /// How many members each gossip round goes to.
    pub gossip_nodes: usize,
    /// How often full state is exchanged over TCP with one random member.
    pub push_pull_interval: Duration,
    /// Deadline for one TCP push/pull exchange (connect, write, read).
    pub tcp_timeout: Duration,
    /// How long failed and left members stay listed before they are forgotten.
    pub reap_after: Duration,
}

impl Timing {
    /// Consul's LAN defaults.
    pub fn lan() -> Self {
        Self {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            indirect_checks: 3,
            suspicion_mult: 4,
            retransmit_mult: 4,
            gossip_interval: Duration::from_millis(200),
            gossip_nodes: 3,
            push_pull_interval: Duration::from_secs(30),
            tcp_timeout: Duration::from_secs(10),
            reap_after: Duration::from_secs(24 * 3600),
        }
    }

    /// Ten times faster than [`Timing::lan`], for tests on loopback or in memory.
    pub fn fast() -> Self {
        Self {
            probe_interval: Duration::from_millis(100),
            probe_timeout: Duration::from_millis(50),
            indirect_checks: 3,
            suspicion_mult: 4,
            retransmit_mult: 4,
            gossip_interval: Duration::from_millis(20),
            gossip_nodes: 3,
            push_pull_interval: Duration::from_secs(3),
            tcp_timeout: Duration::from_secs(2),
            reap_after: Duration::from_secs(3600),
        }
    }

    /// How long a member of a pool of `n` may stay suspect before it is declared failed.
    pub fn suspicion_timeout(&self, n: usize) -> Duration {
        let scale = (n.max(1) as f64).log10().max(1.0);
        self.probe_interval
            .mul_f64(scale * f64::from(self.suspicion_mult))
    }

    /// How many times an update is piggybacked in a pool of `n`.
    pub fn retransmits(&self, n: usize) -> u8 {
        let scale = ((n + 1) as f64).log10().ceil().max(1.0);
        (scale * f64::from(self.retransmit_mult)).clamp(1.0, 255.0) as u8
    }

    pub(crate) fn validate(&self) -> Result<(), GossipError> {
        let bad = |what: &str| Err(GossipError::Config(what.to_owned()));
        if self.probe_interval.is_zero() || self.probe_timeout.is_zero() {
            return bad("probe interval and probe timeout must be positive");
        }
        if self.probe_timeout >= self.probe_interval {
            return bad("probe timeout must be shorter than the probe interval");
        }
        if self.gossip_interval.is_zero() || self.push_pull_interval.is_zero() {
            return bad("gossip and push/pull intervals must be positive");
        }
        if self.indirect_checks == 0 || self.gossip_nodes == 0 || self.suspicion_mult == 0 {
            return bad(
                "indirect checks, gossip nodes and suspicion multiplier must be at least 1",
            );
        }
        Ok(())
    }

    /// The foca configuration for a pool of `n` members (ourselves included).
    pub(crate) fn foca_config(&self, n: usize) -> foca::Config {
        let nonzero = |v: usize| NonZeroUsize::new(v.max(1)).expect("max(1) is non-zero");
        foca::Config {
            probe_period: self.probe_interval,
            probe_rtt: self.probe_timeout,
            num_indirect_probes: nonzero(self.indirect_checks),
            max_transmissions: NonZeroU8::new(self.retransmits(n).max(1)).expect("max(1)"),
            suspect_to_down_after: self.suspicion_timeout(n),
            remove_down_after: Some(self.reap_after),
            max_packet_size: nonzero(MAX_PACKET),
            notify_down_members: true,
            // Our TCP push/pull does what periodic announces would.
            periodic_announce: None,
            // Lets a member wrongly declared down (a healed partition) find its way back.
            periodic_announce_to_down_members: Some(foca::PeriodicParams {
                frequency: self.push_pull_interval,
                num_members: nonzero(1),
            }),
            periodic_gossip: Some(foca::PeriodicParams {
                frequency: self.gossip_interval,
                num_members: nonzero(self.gossip_nodes),
            }),
        }
    }
}

/// Largest plaintext foca packet; with the encryption envelope it stays under a 1500-byte MTU.
pub(crate) const MAX_PACKET: usize = 1400;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspicion_scales_with_log10_of_pool_size() {
        let lan = Timing::lan();
        assert_eq!(lan.suspicion_timeout(1), Duration::from_secs(4));
        assert_eq!(lan.suspicion_timeout(10), Duration::from_secs(4));
        assert_eq!(lan.suspicion_timeout(100), Duration::from_secs(8));
    }

    #[test]
    fn retransmits_follow_memberlist() {
        let lan = Timing::lan();
        assert_eq!(lan.retransmits(1), 4);
        assert_eq!(lan.retransmits(20), 8);
    }

    #[test]
    fn defaults_validate() {
        Timing::lan().validate().unwrap();
        Timing::fast().validate().unwrap();
        let mut bad = Timing::fast();
        bad.probe_timeout = bad.probe_interval;
        assert!(bad.validate().is_err());
    }
}
