//! mesh-dns against real clients: `dig` for every name form and behaviour a
//! user sees, raw packets for what dig will not send.

mod changes;
mod forward;
mod names;
mod robustness;
mod support;
