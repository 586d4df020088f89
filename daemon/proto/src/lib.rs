//! Protobuf and gRPC code for mesh's own services. The generated code is
//! checked in (see tests/bootstrap.rs) so ordinary builds need no protoc.

#![allow(clippy::all)]

/// Server-to-server Raft transport.
pub mod raft {
    include!("gen/mesh.raft.v1.rs");
}
