//! Network coordinates (Vivaldi, as Serf computes them): a point in a
//! Euclidean space plus a height, whose distances estimate round-trip times.

use serde::{Deserialize, Serialize};

/// Dimensions of every coordinate (Serf's default, which Consul uses).
pub const COORDINATE_DIMENSIONS: usize = 8;
/// A coordinate's error starts here and never exceeds it.
pub const COORDINATE_MAX_ERROR: f64 = 1.5;
/// The smallest height, in seconds (keeps distances positive).
pub const COORDINATE_MIN_HEIGHT: f64 = 10.0e-6;
/// Anything further from the origin than this (seconds) is refused: no
/// real network has a 1,000 s round trip, and it keeps arithmetic finite.
pub const COORDINATE_MAX_COMPONENT: f64 = 1000.0;
/// Coordinates accepted in one `PUT /v1/coordinate/update` batch.
pub const MAX_COORDINATE_BATCH: usize = 256;

/// One node's coordinate, in Consul's JSON shape. Units are seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Coordinate {
    pub vec: Vec<f64>,
    pub error: f64,
    pub adjustment: f64,
    pub height: f64,
}

// Sound for every coordinate mesh keeps: NaN is refused by `validate`
// before one is stored or used, so equality is reflexive.
impl Eq for Coordinate {}

impl Default for Coordinate {
    fn default() -> Self {
        Coordinate::origin()
    }
}

/// Why a coordinate from outside is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoordinateError {
    #[error("Vec has {0} dimensions; it must have {COORDINATE_DIMENSIONS}")]
    Dimensions(usize),
    #[error("{0} is not a finite number within ±{COORDINATE_MAX_COMPONENT}")]
    OutOfRange(&'static str),
}

impl Coordinate {
    /// A new node's coordinate: at the origin, with the largest error.
    pub fn origin() -> Coordinate {
        Coordinate {
            vec: vec![0.0; COORDINATE_DIMENSIONS],
            error: COORDINATE_MAX_ERROR,
            adjustment: 0.0,
            height: COORDINATE_MIN_HEIGHT,
        }
    }

    /// Checks a coordinate that came from the network or a request.
    pub fn validate(&self) -> Result<(), CoordinateError> {
        if self.vec.len() != COORDINATE_DIMENSIONS {
            return Err(CoordinateError::Dimensions(self.vec.len()));
        }
        let ok = |x: f64| x.is_finite() && x.abs() <= COORDINATE_MAX_COMPONENT;
        if !self.vec.iter().all(|x| ok(*x)) {
            return Err(CoordinateError::OutOfRange("Vec"));
        }
        if !ok(self.error) || self.error < 0.0 {
            return Err(CoordinateError::OutOfRange("Error"));
        }
        if !ok(self.adjustment) {
            return Err(CoordinateError::OutOfRange("Adjustment"));
        }
        if !ok(self.height) || self.height < 0.0 {
            return Err(CoordinateError::OutOfRange("Height"));
        }
        Ok(())
    }

    /// The Euclidean part plus both heights, without adjustments.
    pub fn raw_distance(&self, other: &Coordinate) -> f64 {
        let squares: f64 = self
            .vec
            .iter()
            .zip(&other.vec)
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        squares.sqrt() + self.height + other.height
    }

    /// The estimated round trip to `other`, in seconds. Adjustments (each
    /// node's average error) are added unless that would go negative.
    pub fn distance(&self, other: &Coordinate) -> f64 {
        let raw = self.raw_distance(other);
        let adjusted = raw + self.adjustment + other.adjustment;
        if adjusted > 0.0 {
            adjusted
        } else {
            raw
        }
    }

    /// How far this coordinate moved from `before` (seconds, Euclidean
    /// part and height): a node need not report one that barely moved.
    pub fn moved_from(&self, before: &Coordinate) -> f64 {
        self.raw_distance(before) - self.height - before.height
            + (self.height - before.height).abs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_adds_heights_and_adjustments_but_never_goes_negative() {
        let mut a = Coordinate::origin();
        let mut b = Coordinate::origin();
        a.vec[0] = 0.003;
        b.vec[1] = 0.004;
        a.height = 0.001;
        b.height = 0.001;
        assert!((a.raw_distance(&b) - 0.007).abs() < 1e-12);
        a.adjustment = 0.001;
        assert!((a.distance(&b) - 0.008).abs() < 1e-12);
        a.adjustment = -1.0;
        assert!(
            (a.distance(&b) - 0.007).abs() < 1e-12,
            "negative adjusted distance falls back to raw"
        );
    }

    #[test]
    fn validation_refuses_wrong_dimensions_and_non_finite_values() {
        assert!(Coordinate::origin().validate().is_ok());
        let mut c = Coordinate::origin();
        c.vec.pop();
        assert_eq!(c.validate(), Err(CoordinateError::Dimensions(7)));
        let mut c = Coordinate::origin();
        c.vec[3] = f64::NAN;
        assert_eq!(c.validate(), Err(CoordinateError::OutOfRange("Vec")));
        let mut c = Coordinate::origin();
        c.height = f64::INFINITY;
        assert_eq!(c.validate(), Err(CoordinateError::OutOfRange("Height")));
        let mut c = Coordinate::origin();
        c.error = -0.5;
        assert_eq!(c.validate(), Err(CoordinateError::OutOfRange("Error")));
    }
}
