//! The whole request path on arbitrary datagrams: never panics, answers
//! carry the query's ID and fit the transport.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for udp in [true, false] {
        if let Some(reply) = mesh_dns::fuzzing::respond(data, udp) {
            assert!(reply.len() >= 12);
            assert_eq!(reply[..2], data[..2], "the reply carries the query ID");
            assert!(reply[2] & 0x80 != 0, "the reply is a response");
            if udp {
                assert!(reply.len() <= 4096);
            }
        }
    }
});
