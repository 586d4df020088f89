//! Why the agent stops: what every task watches to end.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    Running,
    Leave,
    Signal,
}
