//! Any bytes as an HTTP API request body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mesh_api::fuzzing::json_body(data));
