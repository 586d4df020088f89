//! The provider binary as Terraform starts it: refuses to run outside
//! Terraform, and completes the go-plugin handshake with AutoMTLS.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_terraform-provider-mesh");
const COOKIE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";

#[test]
fn refuses_to_run_outside_terraform() {
    let out = Command::new(BIN)
        .env_remove("TF_PLUGIN_MAGIC_COOKIE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Terraform plugin"), "{err}");
}

#[test]
fn prints_the_handshake_line_with_a_server_certificate() {
    // Any PEM certificate stands in for Terraform's client certificate here.
    let pem = "-----BEGIN CERTIFICATE-----\nMIIBeTCCAR+gAwIBAgIUWnFSPTEgDRgqT5a8dSxgvYFeEeswCgYIKoZIzj0EAwIw\nFDESMBAGA1UEAwwJbG9jYWxob3N0MB4XDTI0MDEwMTAwMDAwMFoXDTM0MDEwMTAw\nMDAwMFowFDESMBAGA1UEAwwJbG9jYWxob3N0MFkwEwYHKoZIzj0CAQYIKoZIzj0D\nAQcDQgAEw6Ru8mH3oH6NpmtVh1Ru4nB9WuoTI6cNmw0mGf1jvyoS0t0IR3+kYuQl\nXqn1f+1hI2w9gqcbV9e7o9Ys0E3oRKNTMFEwHQYDVR0OBBYEFJ0v0Yx1qY3JgKsk\nQ5h1vZQ2x6UBMB8GA1UdIwQYMBaAFJ0v0Yx1qY3JgKskQ5h1vZQ2x6UBMA8GA1Ud\nEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIhAN2R1K3Tz6Qq1D2yGZbU7yVw\nm3q6j4mXz5t5g8kq8yJZAiB3bHq7cEo6kqM5r0sP1dC4ZB3o1JvO0aW7n0u2mY1a\nRQ==\n-----END CERTIFICATE-----\n";
    let mut child = Command::new(BIN)
        .env("TF_PLUGIN_MAGIC_COOKIE", COOKIE)
        .env("PLUGIN_PROTOCOL_VERSIONS", "5,6")
        .env("PLUGIN_CLIENT_CERT", pem)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let parts: Vec<&str> = line.trim().split('|').collect();
    assert_eq!(&parts[..3], &["1", "6", "tcp"], "{line}");
    assert!(parts[3].starts_with("127.0.0.1:"), "{line}");
    assert_eq!(parts[4], "grpc");
    assert!(parts[5].len() > 100 && !parts[5].ends_with('='), "{line}");
}
