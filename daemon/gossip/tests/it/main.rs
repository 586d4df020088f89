//! Integration tests for mesh-gossip: in-memory pools and real loopback sockets.

mod mem_pool;
mod support;
mod udp;
