//! Any text as an agent config file (HCL and JSON), then validated.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mesh_config::{parse_str, Format};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for (format, name) in [(Format::Hcl, "agent.hcl"), (Format::Json, "agent.json")] {
        if let Ok(raw) = parse_str(text, format, Path::new(name)) {
            let _ = mesh_config::RuntimeConfig::build(raw);
        }
    }
});
