//! The staged rotation model: roots move `Pending` → `Active` → `Retired` →
//! removed. Pure and serde-able so it can live in replicated state; every
//! transition takes `now` (unix seconds) instead of reading a clock.
//!
//! - `Pending`: in the trust bundle (peers learn to trust it), not signing.
//! - `Active`: the one root that signs leaves.
//! - `Retired`: still in the bundle so its unexpired leaves keep working;
//!   removed at `remove_at` (activation + 2 × LeafCertTTL) or by `retire_now`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::RotationError;
use crate::inspect::CertInfo;
use crate::root::RootCa;
use crate::signer::Signer;

/// Where a root is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stage {
    /// Trusted, not yet signing.
    Pending,
    /// Signing leaves.
    Active,
    /// Trusted until `remove_at`, no longer signing.
    Retired,
}

/// A root and its stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StagedRoot {
    /// The root.
    pub root: RootCa,
    /// Its stage.
    pub stage: Stage,
    /// When it entered `stage`, unix seconds.
    pub since: i64,
    /// For `Retired` roots: when they leave the bundle, unix seconds.
    pub remove_at: Option<i64>,
}

/// Progress of the rotation under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Rotation {
    /// The incoming root.
    #[serde(rename = "NewRootID")]
    pub new_root_id: String,
    /// The root being replaced.
    #[serde(rename = "OldRootID")]
    pub old_root_id: String,
    /// `begin_rotation` time.
    pub started_at: i64,
    /// `activate` time, once activated.
    pub activated_at: Option<i64>,
    /// Window over which leaves are re-issued after activation, seconds.
    pub spread_window_secs: u64,
    /// Leaves re-issued from the new root so far.
    pub reissued: u64,
    /// Leaves that need re-issuing.
    pub total: u64,
}

/// The CA's replicated state: staged roots and the rotation under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CaState {
    /// SPIFFE trust domain of every root.
    pub trust_domain: String,
    /// LeafCertTTL in seconds; retired roots stay trusted for twice this.
    pub leaf_ttl_secs: u64,
    /// Roots in every stage but removed.
    pub roots: Vec<StagedRoot>,
    /// The rotation under way, until the old root is removed.
    pub rotation: Option<Rotation>,
    /// Bumped on every change; watchers and cached bundles key on it.
    pub epoch: u64,
}

// === impl CaState ===

impl CaState {
    /// A state whose only root, `root`, is active.
    pub fn new(root: RootCa, leaf_ttl: Duration, now: i64) -> CaState {
        CaState {
            trust_domain: root.trust_domain.clone(),
            leaf_ttl_secs: leaf_ttl.as_secs(),
            roots: vec![StagedRoot {
                root,
                stage: Stage::Active,
                since: now,
                remove_at: None,
            }],
            rotation: None,
            epoch: 1,
        }
    }

    /// The root that signs leaves.
    pub fn active(&self) -> Option<&RootCa> {
        self.in_stage(Stage::Active).next()
    }

    /// The incoming root, during a rotation before activation.
    pub fn pending(&self) -> Option<&RootCa> {
        self.in_stage(Stage::Pending).next()
    }

    /// Roots in `stage`.
    pub fn in_stage(&self, stage: Stage) -> impl Iterator<Item = &RootCa> {
        self.roots
            .iter()
            .filter(move |r| r.stage == stage)
            .map(|r| &r.root)
    }

    /// A signer for the active root (parses its key: keep it while `Signer::is_for(active)` holds).
    pub fn active_signer(&self) -> Result<Signer, RotationError> {
        Ok(Signer::new(
            self.active().ok_or(RotationError::NoActiveRoot)?,
        )?)
    }

    /// Changes LeafCertTTL (affects retirements scheduled afterwards).
    pub fn set_leaf_ttl(&mut self, leaf_ttl: Duration) {
        self.leaf_ttl_secs = leaf_ttl.as_secs();
        self.epoch += 1;
    }

    /// Adds `new_root` (already cross-signed, see `prepare_rotation`) as `Pending`.
    pub fn begin_rotation(
        &mut self,
        new_root: RootCa,
        now: i64,
        spread_window: Duration,
    ) -> Result<(), RotationError> {
        if let Some(p) = self.pending() {
            return Err(RotationError::InProgress(p.id.clone()));
        }
        let old = self.active().ok_or(RotationError::NoActiveRoot)?;
        if new_root.trust_domain != self.trust_domain {
            return Err(RotationError::TrustDomainChanged {
                active: self.trust_domain.clone(),
                new: new_root.trust_domain,
            });
        }
        if self.roots.iter().any(|r| r.root.id == new_root.id) {
            return Err(RotationError::SameRoot(new_root.id));
        }
        self.rotation = Some(Rotation {
            new_root_id: new_root.id.clone(),
            old_root_id: old.id.clone(),
            started_at: now,
            activated_at: None,
            spread_window_secs: spread_window.as_secs(),
            reissued: 0,
            total: 0,
        });
        self.roots.push(StagedRoot {
            root: new_root,
            stage: Stage::Pending,
            since: now,
            remove_at: None,
        });
        self.epoch += 1;
        Ok(())
    }

    /// Drops the pending root; the active root stays as it was.
    pub fn abort_rotation(&mut self) -> Result<(), RotationError> {
        let before = self.roots.len();
        self.roots.retain(|r| r.stage != Stage::Pending);
        if self.roots.len() == before {
            return Err(RotationError::NoPendingRoot);
        }
        self.rotation = None;
        self.epoch += 1;
        Ok(())
    }

    /// Makes the pending root active; the old active root is retired until `now + 2 × LeafCertTTL`.
    pub fn activate(&mut self, now: i64) -> Result<(), RotationError> {
        if self.pending().is_none() {
            return Err(RotationError::NoPendingRoot);
        }
        let remove_at = now.saturating_add(2 * self.leaf_ttl_secs as i64);
        for r in &mut self.roots {
            match r.stage {
                Stage::Active => {
                    r.stage = Stage::Retired;
                    r.since = now;
                    r.remove_at = Some(remove_at);
                }
                Stage::Pending => {
                    r.stage = Stage::Active;
                    r.since = now;
                }
                Stage::Retired => {}
            }
        }
        if let Some(rot) = &mut self.rotation {
            rot.activated_at = Some(now);
        }
        self.epoch += 1;
        Ok(())
    }

    /// Removes retired roots whose time is up; returns their IDs.
    pub fn retire_due(&mut self, now: i64) -> Vec<String> {
        self.remove_retired(|r| r.remove_at.is_some_and(|t| t <= now))
    }

    /// Removes every retired root now (e.g. after a compromise); returns their IDs.
    pub fn retire_now(&mut self) -> Vec<String> {
        self.remove_retired(|_| true)
    }

    fn remove_retired(&mut self, due: impl Fn(&StagedRoot) -> bool) -> Vec<String> {
        let (gone, kept): (Vec<_>, Vec<_>) = self
            .roots
            .drain(..)
            .partition(|r| r.stage == Stage::Retired && due(r));
        self.roots = kept;
        if gone.is_empty() {
            return Vec::new();
        }
        // Cross-signed certificates issued by a removed root chain to nothing now.
        let subjects: Vec<Vec<u8>> = gone
            .iter()
            .filter_map(|r| CertInfo::from_pem(&r.root.root_cert, "root").ok())
            .map(|i| i.subject_raw)
            .collect();
        for r in &mut self.roots {
            r.root.intermediate_certs.retain(|pem| {
                CertInfo::from_pem(pem, "intermediate")
                    .map_or(true, |i| !subjects.contains(&i.issuer_raw))
            });
        }
        let ids: Vec<String> = gone.into_iter().map(|r| r.root.id).collect();
        if self
            .rotation
            .as_ref()
            .is_some_and(|rot| ids.contains(&rot.old_root_id))
        {
            self.rotation = None;
        }
        self.epoch += 1;
        ids
    }

    /// Sets how many leaves the rotation must re-issue.
    pub fn set_total(&mut self, total: u64) {
        if let Some(rot) = &mut self.rotation {
            rot.total = total;
            rot.reissued = rot.reissued.min(total);
            self.epoch += 1;
        }
    }

    /// Records `n` more leaves re-issued from the new root (capped at the total).
    pub fn record_reissued(&mut self, n: u64) {
        if let Some(rot) = &mut self.rotation {
            rot.reissued = rot.reissued.saturating_add(n).min(rot.total);
            self.epoch += 1;
        }
    }

    /// `(reissued, total)` of the rotation under way; `(0, 0)` when none.
    pub fn progress(&self) -> (u64, u64) {
        self.rotation
            .as_ref()
            .map_or((0, 0), |r| (r.reissued, r.total))
    }

    /// PEMs peers must trust: the active, pending and retired roots, each followed by its intermediates.
    pub fn trust_bundle(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for stage in [Stage::Active, Stage::Pending, Stage::Retired] {
            for root in self.in_stage(stage) {
                for pem in std::iter::once(root.root_cert.clone()).chain(root.chain_pems()) {
                    if !out.contains(&pem) {
                        out.push(pem);
                    }
                }
            }
        }
        out
    }
}

/// When to renew a leaf: a random moment between 60% and 90% of its lifetime, unix seconds.
pub fn renew_at(valid_after: i64, valid_before: i64, rng: &mut impl rand::Rng) -> i64 {
    let life = (valid_before - valid_after).max(0) as f64;
    let fraction: f64 = rng.random_range(0.6..0.9);
    valid_after + (life * fraction) as i64
}

/// Offset after activation at which leaf `leaf_index` of `total` is re-issued, spread evenly over `window`.
pub fn reissue_at(leaf_index: u64, total: u64, window: Duration) -> Duration {
    if total == 0 {
        return Duration::ZERO;
    }
    let index = leaf_index.min(total - 1) as u128;
    Duration::from_nanos((window.as_nanos() * index / total as u128) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyType;
    use rand::SeedableRng;

    const NOW: i64 = 1_800_000_000;
    const HOUR: Duration = Duration::from_secs(3600);

    fn root() -> RootCa {
        RootCa::generate_at("td.consul", KeyType::EcP256, 1000 * HOUR, NOW).unwrap()
    }

    #[test]
    fn renewal_lands_in_the_last_part_of_life() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (after, before) = (NOW, NOW + 72 * 3600);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let t = renew_at(after, before, &mut rng);
            assert!(
                (after + 72 * 36 * 60..=after + 72 * 36 * 90).contains(&t),
                "{t}"
            );
            seen.insert(t);
        }
        assert!(seen.len() > 900, "renewals are spread, not synchronised");
        assert_eq!(renew_at(NOW, NOW, &mut rng), NOW);
    }

    #[test]
    fn reissue_spreads_evenly_over_the_window() {
        let window = Duration::from_secs(1000);
        let offsets: Vec<_> = (0..4).map(|i| reissue_at(i, 4, window).as_secs()).collect();
        assert_eq!(offsets, vec![0, 250, 500, 750]);
        assert_eq!(reissue_at(0, 0, window), Duration::ZERO);
        assert_eq!(
            reissue_at(99, 4, window).as_secs(),
            750,
            "index clamps to the last slot"
        );
    }

    #[test]
    fn progress_counts_reissued_leaves() {
        let mut state = CaState::new(root(), 72 * HOUR, NOW);
        assert_eq!(state.progress(), (0, 0));
        state.begin_rotation(root(), NOW, HOUR).unwrap();
        state.set_total(10);
        state.record_reissued(4);
        state.record_reissued(4);
        assert_eq!(state.progress(), (8, 10));
        state.record_reissued(5);
        assert_eq!(state.progress(), (10, 10), "never more than the total");
    }

    #[test]
    fn transitions_are_checked_and_bump_the_epoch() {
        let first = root();
        let mut state = CaState::new(first.clone(), 72 * HOUR, NOW);
        assert!(matches!(
            state.begin_rotation(first, NOW, HOUR),
            Err(RotationError::SameRoot(_))
        ));
        let other_td = RootCa::generate_at("other.consul", KeyType::EcP256, HOUR, NOW).unwrap();
        assert!(matches!(
            state.begin_rotation(other_td, NOW, HOUR),
            Err(RotationError::TrustDomainChanged { .. })
        ));
        let epoch = state.epoch;
        state.begin_rotation(root(), NOW, HOUR).unwrap();
        assert!(state.epoch > epoch);
        assert_eq!(state.trust_bundle().len(), 2);
        state.activate(NOW + 10).unwrap();
        let retired = &state
            .roots
            .iter()
            .find(|r| r.stage == Stage::Retired)
            .unwrap();
        assert_eq!(retired.remove_at, Some(NOW + 10 + 2 * 72 * 3600));
    }

    #[test]
    fn state_round_trips_through_json_and_postcard() {
        let mut state = CaState::new(root(), 72 * HOUR, NOW);
        state.begin_rotation(root(), NOW, HOUR).unwrap();
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<CaState>(&json).unwrap(), state);
        let bytes = postcard::to_allocvec(&state).unwrap();
        assert_eq!(postcard::from_bytes::<CaState>(&bytes).unwrap(), state);
    }
}
