//! Generated protobuf code (checked in; see tests/bootstrap.rs).
#![allow(missing_docs, clippy::all)]

/// Terraform plugin protocol 6.
pub mod tfplugin6 {
    include!("gen/tfplugin6.rs");
}

/// go-plugin's controller and stdio services.
pub mod plugin {
    include!("gen/plugin.rs");
}

/// gRPC health checking.
pub mod health {
    include!("gen/grpc.health.v1.rs");
}
