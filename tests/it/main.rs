//! Integration tests against real `mesh` processes (real Raft across
//! processes, real rocksdb, real gossip on loopback).

// `assert_eq!(body, true)` mirrors the JSON `true`/`false` the API answers.
#![allow(clippy::bool_assert_comparison)]

mod bad_input;
mod catalog;
mod cluster;
mod compat;
mod dev;
mod dns;

use std::time::Duration;

/// An HTTP client with a bounded timeout for every request.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client")
}
