//! Nodes' network coordinates, as agents report them. A node that leaves
//! the catalog takes its coordinate with it.

use std::collections::BTreeMap;

use mesh_types::{Coordinate, CoordinateUpdate, Outcome};
use serde::{Deserialize, Serialize};

use crate::apply::Applied;
use crate::{State, Table};

/// The coordinate table, appended to [`State`] in snapshot format 7.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CoordinateTables {
    pub by_node: BTreeMap<String, Coordinate>,
    pub index: u64,
}

impl State {
    /// A node's coordinate, if it reported one.
    pub fn coordinate(&self, node: &str) -> Option<&Coordinate> {
        self.coordinates.by_node.get(node)
    }

    /// Every node's coordinate, by node name.
    pub fn coordinates(&self) -> impl Iterator<Item = (&String, &Coordinate)> {
        self.coordinates.by_node.iter()
    }

    /// Sorts `items` by estimated round trip from `near`, nearest first;
    /// items whose node has no coordinate go last, in their old order. If
    /// `near` has no coordinate, nothing moves (Consul's rule).
    pub fn sort_by_rtt<T>(&self, near: &str, items: &mut [T], node_of: impl Fn(&T) -> &str) {
        let Some(origin) = self.coordinate(near) else {
            return;
        };
        items.sort_by(|a, b| {
            let d = |t: &T| {
                self.coordinate(node_of(t))
                    .map_or(f64::INFINITY, |c| origin.distance(c))
            };
            d(a).total_cmp(&d(b))
        });
    }

    pub(crate) fn coordinate_batch(
        &mut self,
        index: u64,
        updates: Vec<CoordinateUpdate>,
    ) -> Applied {
        let mut changed = false;
        for u in updates {
            // The API validated it; a replayed entry from elsewhere is checked again.
            if !self.nodes.contains_key(&u.node) || u.coord.validate().is_err() {
                continue;
            }
            self.coordinates.by_node.insert(u.node, u.coord);
            changed = true;
        }
        if !changed {
            return (Outcome::Done, Vec::new());
        }
        self.coordinates.index = index;
        (Outcome::Done, vec![Table::Coordinates])
    }

    /// A deregistered node's coordinate goes with it.
    pub(crate) fn coordinate_forget(&mut self, index: u64, node: &str) -> bool {
        if self.coordinates.by_node.remove(node).is_some() {
            self.coordinates.index = index;
            return true;
        }
        false
    }
}
