//! Integration tests against real `mesh` processes (real Raft across
//! processes, real rocksdb, real gossip on loopback).

mod bad_input;
mod catalog;
mod cluster;
mod compat;
mod dev;

use std::time::Duration;

/// An HTTP client with a bounded timeout for every request.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client")
}
