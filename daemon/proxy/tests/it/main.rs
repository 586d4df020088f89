//! Integration tests of mesh-proxy: real TLS on 127.0.0.1, port 0.

mod harness;
mod pki;
mod rawtls;

mod admin;
mod l4;
mod l7;
mod live;
mod refusals;
mod rotation;
