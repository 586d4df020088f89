//! Any bytes as a push/pull stream on the gossip TCP port.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mesh_gossip::fuzzing::stream(data));
