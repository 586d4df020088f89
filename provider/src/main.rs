//! terraform-provider-mesh: Terraform resources and data sources for mesh,
//! served over the plugin protocol v6 by `tfplug`.
#![forbid(unsafe_code)]

mod acl;
mod acl_roles;
mod ca_config;
mod config_entry;
mod data;
mod docs;
mod gateways;
mod intention;
mod key_prefix;
mod keys;
mod kv;
mod prepared_query;
mod provider;
mod service;
mod util;

use std::sync::Arc;

use anyhow::Context;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    // Terraform reads stdout for the handshake line only; logs go to stderr.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MESH_PROVIDER_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let provider = Arc::new(provider::MeshProvider::default());
    if let Err(e) = tfplug::serve(provider)
        .await
        .context("terraform-provider-mesh")
    {
        eprintln!("{e:#}");
        std::process::exit(1);
    }
    Ok(())
}
