//! Any bytes as a gossip datagram.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mesh_gossip::fuzzing::datagram(data));
