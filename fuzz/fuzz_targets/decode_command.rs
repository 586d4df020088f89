//! Any bytes as a proposal from a peer and as a Raft log entry: a refusal
//! or an outcome, never a panic; two replicas always agree.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mesh_types::decode_command(data);
    let (a, b) = (mesh_state::StateStore::new(), mesh_state::StateStore::new());
    assert_eq!(a.apply(1, data), b.apply(1, data));
});
