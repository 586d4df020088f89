//! Entry points for the cargo-fuzz targets in `fuzz/` (feature `fuzzing`):
//! any bytes as a gossip datagram or a push/pull stream are refused or
//! handled, never a panic or an unbounded allocation. A stable run of the
//! same entry points is in this module's tests.

use std::collections::BTreeMap;
use std::sync::Arc;

use foca::AccumulatingRuntime;
use parking_lot::Mutex;

use crate::identity::{LeftSet, NodeId};
use crate::wire::{self, PushPull};
use crate::{Keyring, Role, Timing};

fn key() -> Keyring {
    Keyring::new(vec![7u8; 32]).expect("a 32-byte key")
}

/// `data` as a UDP datagram: opened without and with a keyring, then (as if
/// it had decrypted) handed to the member list.
pub fn datagram(data: &[u8]) {
    let ring = key();
    for keyring in [None, Some(&ring)] {
        if let Ok(plain) = wire::open(keyring, false, data) {
            deliver(&plain);
        }
    }
    deliver(data);
}

fn deliver(plain: &[u8]) {
    let left = Arc::new(Mutex::new(LeftSet::default()));
    let id = NodeId {
        name: "fuzz".into(),
        addr: "127.0.0.1:1".parse().expect("an address"),
        role: Role::Server,
        dc: "dc1".into(),
        tags: BTreeMap::new(),
        version: 1,
    };
    let mut foca = crate::node::new_foca(
        id,
        &Timing::lan(),
        &left,
        &Arc::new(Mutex::new(crate::events::EventLog::new())),
    );
    let mut rt = AccumulatingRuntime::new();
    let _ = foca.handle_data(plain, &mut rt);
    let _ = PushPull::decode(plain);
}

/// `data` as a push/pull TCP stream, read without and with a keyring.
pub fn stream(data: &[u8]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let ring = key();
    for keyring in [None, Some(&ring)] {
        runtime.block_on(async {
            let mut reader = data;
            if let Ok(Ok(plain)) = wire::receive(&mut reader, keyring).await {
                let _ = PushPull::decode(&plain);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stable stand-in for the fuzzer: random and mutated inputs.
    #[test]
    fn random_datagrams_and_streams_are_refused_not_panics() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let ring = key();
        let valid = wire::seal(Some(&ring), b"\x00\x01\x02hello");
        for round in 0..3000 {
            let len = (next() % 300) as usize;
            let mut data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 3 == 0 {
                // Mutate a valid envelope rather than pure noise.
                data = valid.clone();
                let i = (next() as usize) % data.len();
                data[i] ^= (next() as u8) | 1;
            }
            datagram(&data);
            stream(&data);
        }
        // A stream claiming a huge frame allocates nothing for it.
        stream(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    }
}
