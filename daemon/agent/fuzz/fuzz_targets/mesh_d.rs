//! Any bytes as a mesh.d file (HCL, then JSON): an error with a position or
//! declarations whose checks return errors, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mesh_config::{parse_resources, Format};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for (format, name) in [(Format::Hcl, "f.hcl"), (Format::Json, "f.json")] {
        if let Ok(decls) = parse_resources(text, format, Path::new(name)) {
            let _ = mesh_agent::check_declarations(&decls);
        }
    }
});
