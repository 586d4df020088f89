//! Vivaldi: each round-trip sample to a peer moves our coordinate so that
//! coordinate distances approach measured RTTs (Dabek et al., with the
//! height, adjustment and gravity refinements Serf uses).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use mesh_types::{Coordinate, COORDINATE_MAX_ERROR, COORDINATE_MIN_HEIGHT};

/// How much one sample may change our error estimate.
const ERROR_GAIN: f64 = 0.25;
/// How far one sample may move the coordinate.
const MOVE_GAIN: f64 = 0.25;
/// Samples averaged into the adjustment term.
const ADJUSTMENT_WINDOW: usize = 20;
/// RTT samples per peer whose median is used (filters one-off spikes).
const LATENCY_FILTER: usize = 3;
/// Pull toward the origin so the whole system does not drift away.
const GRAVITY_RHO: f64 = 150.0;
/// Peers whose samples we remember (bounds memory in a huge pool).
const MAX_TRACKED_PEERS: usize = 4096;
/// A sample this long (seconds) is not a LAN round trip: ignored.
const MAX_RTT_SECS: f64 = 10.0;
/// Below this, two coordinates count as the same point.
const ZERO_THRESHOLD: f64 = 1.0e-6;

/// Our coordinate and the latest coordinate of each peer we probed:
/// written by the gossip loop, read through the handle.
#[derive(Debug, Default)]
pub(crate) struct CoordinateView {
    pub vivaldi: Vivaldi,
    pub peers: HashMap<String, Coordinate>,
}

/// Our coordinate and what it learned from.
#[derive(Debug, Clone)]
pub(crate) struct Vivaldi {
    coord: Coordinate,
    /// Ring of (measured − estimated) RTTs.
    adjustment_samples: [f64; ADJUSTMENT_WINDOW],
    adjustment_next: usize,
    latency: HashMap<String, VecDeque<f64>>,
}

impl Default for Vivaldi {
    fn default() -> Self {
        Vivaldi {
            coord: Coordinate::origin(),
            adjustment_samples: [0.0; ADJUSTMENT_WINDOW],
            adjustment_next: 0,
            latency: HashMap::new(),
        }
    }
}

impl Vivaldi {
    pub fn coordinate(&self) -> &Coordinate {
        &self.coord
    }

    /// A peer left: its samples no longer matter.
    pub fn forget(&mut self, peer: &str) {
        self.latency.remove(peer);
    }

    /// Feeds one round trip to `peer`, whose coordinate is `theirs`
    /// (already validated). Returns false if the sample was unusable.
    pub fn observe(&mut self, peer: &str, theirs: &Coordinate, rtt: Duration) -> bool {
        let rtt = rtt.as_secs_f64();
        if !(rtt > 0.0 && rtt < MAX_RTT_SECS) {
            return false;
        }
        let rtt = self.median_rtt(peer, rtt);
        self.move_toward(theirs, rtt);
        self.adjust(theirs, rtt);
        self.gravity();
        true
    }

    fn median_rtt(&mut self, peer: &str, rtt: f64) -> f64 {
        if !self.latency.contains_key(peer) && self.latency.len() >= MAX_TRACKED_PEERS {
            // Forget an arbitrary peer rather than grow without bound.
            if let Some(k) = self.latency.keys().next().cloned() {
                self.latency.remove(&k);
            }
        }
        let samples = self.latency.entry(peer.to_string()).or_default();
        samples.push_back(rtt);
        if samples.len() > LATENCY_FILTER {
            samples.pop_front();
        }
        let mut sorted: Vec<f64> = samples.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }

    fn move_toward(&mut self, theirs: &Coordinate, rtt: f64) {
        let dist = self.coord.raw_distance(theirs);
        let wrongness = ((dist - rtt) / rtt).abs();
        let total_error = (self.coord.error + theirs.error).max(ZERO_THRESHOLD);
        let weight = self.coord.error / total_error;
        self.coord.error = (ERROR_GAIN * weight * wrongness
            + self.coord.error * (1.0 - ERROR_GAIN * weight))
            .min(COORDINATE_MAX_ERROR);
        let force = MOVE_GAIN * weight * (rtt - dist);
        self.apply_force(theirs, force);
    }

    /// Moves along the line from `other` to us by `force` seconds
    /// (negative: toward it); heights move with the same share.
    fn apply_force(&mut self, other: &Coordinate, force: f64) {
        let (unit, magnitude) = unit_vector_from(&other.vec, &self.coord.vec);
        for (x, u) in self.coord.vec.iter_mut().zip(&unit) {
            *x += u * force;
        }
        if magnitude > ZERO_THRESHOLD {
            self.coord.height =
                (self.coord.height + other.height) * force / magnitude + self.coord.height;
        }
        self.coord.height = self.coord.height.max(COORDINATE_MIN_HEIGHT);
    }

    fn adjust(&mut self, theirs: &Coordinate, rtt: f64) {
        self.adjustment_samples[self.adjustment_next] = rtt - self.coord.raw_distance(theirs);
        self.adjustment_next = (self.adjustment_next + 1) % ADJUSTMENT_WINDOW;
        let sum: f64 = self.adjustment_samples.iter().sum();
        self.coord.adjustment = sum / (2.0 * ADJUSTMENT_WINDOW as f64);
    }

    fn gravity(&mut self) {
        let origin = Coordinate {
            vec: vec![0.0; self.coord.vec.len()],
            error: 0.0,
            adjustment: 0.0,
            height: COORDINATE_MIN_HEIGHT,
        };
        let dist = self.coord.raw_distance(&origin);
        let force = -(dist / GRAVITY_RHO).powi(2);
        // Gravity moves the point, not the height.
        let height = self.coord.height;
        self.apply_force(&origin, force);
        self.coord.height = height;
    }
}

/// The unit vector pointing from `from` to `to`, and the distance between
/// them; a random direction when they coincide (so two nodes at the origin
/// can push apart).
fn unit_vector_from(from: &[f64], to: &[f64]) -> (Vec<f64>, f64) {
    let diff: Vec<f64> = to.iter().zip(from).map(|(a, b)| a - b).collect();
    let magnitude = diff.iter().map(|x| x * x).sum::<f64>().sqrt();
    if magnitude > ZERO_THRESHOLD {
        return (diff.iter().map(|x| x / magnitude).collect(), magnitude);
    }
    let random: Vec<f64> = (0..diff.len())
        .map(|_| rand::random::<f64>() - 0.5)
        .collect();
    let norm = random.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > ZERO_THRESHOLD {
        (random.iter().map(|x| x / norm).collect(), 0.0)
    } else {
        (vec![0.0; diff.len()], 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nodes on a line, RTT proportional to their distance: after enough
    /// rounds the coordinates predict every pair's RTT closely.
    #[test]
    fn coordinates_converge_to_measured_round_trips() {
        let n = 8;
        let rtt = |i: usize, j: usize| Duration::from_micros(2_000 * i.abs_diff(j) as u64 + 500);
        let names: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
        let mut nodes = vec![Vivaldi::default(); n];
        for round in 0..2_000 {
            for i in 0..n {
                let j = (i + 1 + round % (n - 1)) % n;
                let theirs = nodes[j].coordinate().clone();
                assert!(nodes[i].observe(&names[j], &theirs, rtt(i, j)));
            }
        }
        let mut worst: f64 = 0.0;
        for i in 0..n {
            for j in 0..n {
                if i == j {
                    continue;
                }
                let estimate = nodes[i].coordinate().distance(nodes[j].coordinate());
                let truth = rtt(i, j).as_secs_f64();
                worst = worst.max((estimate - truth).abs() / truth);
            }
        }
        assert!(worst < 0.25, "worst relative error {worst}");
        // The nearest neighbour is predicted nearer than the far end.
        let c = |i: usize| nodes[i].coordinate().clone();
        assert!(c(0).distance(&c(1)) < c(0).distance(&c(7)));
    }

    #[test]
    fn a_spike_is_filtered_and_nonsense_samples_are_ignored() {
        let mut v = Vivaldi::default();
        let peer = Coordinate::origin();
        assert!(!v.observe("p", &peer, Duration::ZERO));
        assert!(!v.observe("p", &peer, Duration::from_secs(60)));
        for _ in 0..3 {
            v.observe("p", &peer, Duration::from_millis(1));
        }
        assert_eq!(
            v.median_rtt("p", 5.0),
            0.001,
            "one spike does not move the median"
        );
        v.forget("p");
        assert!(!v.latency.contains_key("p"));
    }
}
