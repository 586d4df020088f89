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
    let protos =
        ["tfplugin6.proto", "plugin.proto", "health.proto"].map(|p| root.join("proto").join(p));
    tonic_prost_build::configure()
        .build_client(false)
        .out_dir(out.path())
        .emit_rerun_if_changed(false)
        .compile_protos(&protos, &[root.join("proto")])
        .expect("protoc failed: apt-get install protobuf-compiler");
    let mut stale = Vec::new();
    for file in ["tfplugin6.rs", "plugin.rs", "grpc.health.v1.rs"] {
        let fresh = std::fs::read_to_string(out.path().join(file)).unwrap();
        let checked_in = root.join("src/gen").join(file);
        if std::fs::read_to_string(&checked_in).unwrap_or_default() != fresh {
            stale.push(file);
            if std::env::var_os("MESH_PROTO_WRITE").is_some() {
                std::fs::write(&checked_in, &fresh).unwrap();
            }
        }
    }
    // Rewriting never makes the run pass: a stale file is always a failure.
    assert!(
        stale.is_empty(),
        "src/gen/{stale:?} stale (rewritten if MESH_PROTO_WRITE was set; review and commit): run MESH_PROTO_WRITE=1 cargo test -p tfplug --test bootstrap"
    );
}
