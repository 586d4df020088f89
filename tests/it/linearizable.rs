//! A linearizability checker for KV registers (Wing & Gong's search with
//! Lowe's memoisation of visited states): each key's history of reads,
//! writes and compare-and-sets must be explainable by some order of the
//! operations that respects real time. Operations whose outcome is unknown
//! (a timeout, a reset connection) may have taken effect at any point after
//! they started, or never.

use std::collections::HashSet;

/// What a client did to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Wrote a (unique) value.
    Write(u32),
    /// Read this value (`None`: absent).
    Read(Option<u32>),
    /// Set `new` if the value was `expected`; `Some(ok)` when the answer
    /// is known.
    Cas {
        expected: Option<u32>,
        new: u32,
        ok: Option<bool>,
    },
}

/// One operation: when it was called and (if known) when it returned.
#[derive(Debug, Clone)]
pub struct Op {
    pub call: u64,
    /// `None`: the outcome is unknown, so it never returned.
    pub ret: Option<u64>,
    pub kind: Kind,
}

impl Op {
    fn ret_or_never(&self) -> u64 {
        self.ret.unwrap_or(u64::MAX)
    }
}

/// Applies `op` to `state`: the new state, or `None` if `op`'s observed
/// answer is impossible from `state`.
fn step(state: Option<u32>, op: &Kind) -> Option<Option<u32>> {
    match *op {
        Kind::Write(v) => Some(Some(v)),
        Kind::Read(seen) => (seen == state).then_some(state),
        Kind::Cas { expected, new, ok } => {
            let applies = state == expected;
            match ok {
                Some(answer) if answer != applies => None,
                _ if applies => Some(Some(new)),
                _ => Some(state),
            }
        }
    }
}

/// Most states the search visits before it gives up (and fails the check).
const BUDGET: usize = 5_000_000;

/// Whether `ops` (one key's history, starting from an absent key) are
/// linearizable. `Err` names the reason it is not, or that the search gave
/// up.
pub fn check(ops: &[Op]) -> Result<(), String> {
    let n = ops.len();
    let words = n.div_ceil(64).max(1);
    let mut done = vec![0u64; words];
    let mut seen: HashSet<(Vec<u64>, Option<u32>)> = HashSet::new();
    let must = ops.iter().filter(|o| o.ret.is_some()).count();
    // Depth-first: each frame is (linearized set, state, count of known ops
    // placed, next candidate to try).
    let mut stack: Vec<(Vec<u64>, Option<u32>, usize)> = vec![(done.clone(), None, 0)];
    let mut longest = 0;
    while let Some((set, state, placed)) = stack.pop() {
        if placed == must {
            return Ok(());
        }
        longest = longest.max(placed);
        if !seen.insert((set.clone(), state)) {
            continue;
        }
        if seen.len() > BUDGET {
            return Err(format!("search gave up after {BUDGET} states"));
        }
        done.clone_from(&set);
        let is_done = |i: usize| done[i / 64] & (1 << (i % 64)) != 0;
        // An op may go next only if no pending op returned before it began.
        let horizon = (0..n)
            .filter(|&i| !is_done(i))
            .map(|i| ops[i].ret_or_never())
            .min()
            .unwrap_or(u64::MAX);
        for (i, op) in ops.iter().enumerate() {
            if is_done(i) || op.call > horizon {
                continue;
            }
            if let Some(next) = step(state, &op.kind) {
                let mut set = set.clone();
                set[i / 64] |= 1 << (i % 64);
                stack.push((set, next, placed + usize::from(op.ret.is_some())));
            }
        }
    }
    Err(format!(
        "no order explains the history: at most {longest} of {must} completed operations fit"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(call: u64, ret: u64, kind: Kind) -> Op {
        Op {
            call,
            ret: Some(ret),
            kind,
        }
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        let ops = [
            op(0, 10, Kind::Write(1)),
            op(1, 9, Kind::Read(Some(1))),
            op(2, 8, Kind::Read(None)),
            op(11, 12, Kind::Read(Some(1))),
        ];
        assert!(check(&ops).is_ok());
    }

    #[test]
    fn a_stale_read_after_a_write_returned_is_caught() {
        let ops = [
            op(0, 1, Kind::Write(1)),
            op(2, 3, Kind::Write(2)),
            op(4, 5, Kind::Read(Some(1))),
        ];
        assert!(check(&ops).is_err());
    }

    #[test]
    fn a_lost_acknowledged_write_is_caught() {
        let ops = [op(0, 1, Kind::Write(1)), op(2, 3, Kind::Read(None))];
        assert!(check(&ops).is_err());
    }

    #[test]
    fn two_successful_cas_from_one_value_are_caught() {
        let cas = |new| Kind::Cas {
            expected: Some(1),
            new,
            ok: Some(true),
        };
        let ops = [op(0, 1, Kind::Write(1)), op(2, 5, cas(2)), op(3, 6, cas(3))];
        assert!(check(&ops).is_err());
        let ok = [
            op(0, 1, Kind::Write(1)),
            op(2, 5, cas(2)),
            op(
                3,
                6,
                Kind::Cas {
                    expected: Some(1),
                    new: 3,
                    ok: Some(false),
                },
            ),
        ];
        assert!(check(&ok).is_ok());
    }

    #[test]
    fn an_unknown_outcome_may_apply_late_or_never() {
        let unknown = Op {
            call: 0,
            ret: None,
            kind: Kind::Write(7),
        };
        let never = [unknown.clone(), op(5, 6, Kind::Read(None))];
        assert!(check(&never).is_ok());
        let late = [
            unknown,
            op(5, 6, Kind::Read(None)),
            op(7, 8, Kind::Read(Some(7))),
        ];
        assert!(check(&late).is_ok());
        // But it cannot be undone once seen.
        let flapping = [
            Op {
                call: 0,
                ret: None,
                kind: Kind::Write(7),
            },
            op(5, 6, Kind::Read(Some(7))),
            op(7, 8, Kind::Read(None)),
        ];
        assert!(check(&flapping).is_err());
    }
}
