//! Leaf signing throughput on one thread: EC P-256 root, and per leaf a fresh
//! EC P-256 key pair plus one ECDSA signature, PEM-encoded (what
//! `/agent/connect/ca/leaf` costs). Prints `leaves_per_sec=<n>` for bench/ca_sign.sh.
//!
//!   cargo bench --profile bench-build -p mesh-ca --bench sign -- [seconds]

use std::hint::black_box;
use std::time::{Duration, Instant};

use mesh_ca::{KeyType, LeafRequest, RootCa, Signer};

fn rate(label: &str, secs: f64, mut op: impl FnMut()) -> f64 {
    for _ in 0..200 {
        op(); // warm up caches and the allocator
    }
    let deadline = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < deadline {
        for _ in 0..100 {
            op();
        }
        n += 100;
    }
    let per_sec = n as f64 / start.elapsed().as_secs_f64();
    println!(
        "{label:<34} {per_sec:>10.0}/s  ({:.1} µs each, {n} ops)",
        1e6 / per_sec
    );
    per_sec
}

fn main() {
    let secs: f64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(5.0);
    let td = "11111111-2222-3333-4444-555555555555.consul";
    let root = RootCa::generate(td, KeyType::EcP256, Duration::from_secs(87600 * 3600)).unwrap();
    let signer = Signer::new(&root).unwrap();
    let req = LeafRequest::new("web", "dc1", Duration::from_secs(72 * 3600));

    let leaves = rate("sign_leaf (keygen + sign + PEM)", secs, || {
        black_box(signer.sign_leaf(black_box(&req)).unwrap());
    });
    rate("  of which: P-256 keygen (rcgen)", secs.min(2.0), || {
        black_box(rcgen::KeyPair::generate().unwrap());
    });
    println!("leaves_per_sec={leaves:.0}");
}
