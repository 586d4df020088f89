//! Regenerates the checked-in protobuf code and fails if it drifted.
//! Needs `protoc` (Debian `protobuf-compiler`); set MESH_PROTO_WRITE=1 to update.

use std::path::Path;

#[test]
fn generated_code_is_current() {
    // Cargo sets it at run time too; a binary built in another checkout
    // sharing the target dir would otherwise look there.
    let dir =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    let root = Path::new(&dir);
    let out = tempfile::tempdir().unwrap();
    tonic_prost_build::configure()
        .out_dir(out.path())
        .emit_rerun_if_changed(false)
        .compile_protos(&[root.join("proto/raft.proto")], &[root.join("proto")])
        .expect("protoc failed: apt-get install protobuf-compiler");
    let fresh = std::fs::read_to_string(out.path().join("mesh.raft.v1.rs")).unwrap();
    let checked_in = root.join("src/gen/mesh.raft.v1.rs");
    let current = std::fs::read_to_string(&checked_in).unwrap_or_default();
    if current != fresh && std::env::var_os("MESH_PROTO_WRITE").is_some() {
        std::fs::write(&checked_in, &fresh).unwrap();
        // Rewriting never makes the run pass: a stale file is always a failure.
        panic!("src/gen/mesh.raft.v1.rs was stale and has been rewritten; review and commit it");
    }
    assert!(
        current == fresh,
        "src/gen/mesh.raft.v1.rs is stale: run MESH_PROTO_WRITE=1 cargo test -p mesh-proto"
    );
}
