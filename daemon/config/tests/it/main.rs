//! mesh-config integration tests: real files on disk, as the agent reads them.

mod errors;
mod examples;
mod merge;

use std::path::{Path, PathBuf};

/// A temp dir holding the given files.
fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// The repository's `examples/agent` directory.
fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/agent")
}
