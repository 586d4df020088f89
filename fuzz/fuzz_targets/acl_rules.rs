//! Any text as ACL policy rules: parsed, or an error with a position.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = mesh_acl::parse_rules(text);
    }
});
