use std::path::Path;
use std::sync::Arc;

use mesh_config::TlsSurface;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

use super::*;
use crate::generate::{create_ca, create_cert, CertKind, CertRequest, Written};

fn cert(dir: &Path, ca: &Written, kind: CertKind) -> Written {
    create_cert(
        dir,
        &ca.cert,
        &ca.key,
        &CertRequest {
            kind,
            datacenter: "dc1".into(),
            domain: "consul".into(),
            days: 30,
            additional_dns: vec![],
            additional_ips: vec![],
            node: None,
        },
    )
    .unwrap()
}

fn surface(ca: &Written, own: &Written, verify_incoming: bool, hostname: bool) -> TlsSurface {
    TlsSurface {
        key: "tls.internal_rpc".into(),
        ca_file: Some(ca.cert.clone()),
        cert_file: Some(own.cert.clone()),
        key_file: Some(own.key.clone()),
        verify_incoming,
        verify_outgoing: true,
        verify_server_hostname: hostname,
        ..Default::default()
    }
}

/// Runs a handshake in memory; the error of whichever side refused.
fn handshake(client: Arc<ClientConfig>, server: Arc<ServerConfig>) -> Result<(), rustls::Error> {
    let name = ServerName::try_from("server.dc1.consul").unwrap();
    let mut c = ClientConnection::new(client, name).unwrap();
    let mut s = ServerConnection::new(server).unwrap();
    for _ in 0..10 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut slice = &buf[..];
        while !slice.is_empty() {
            s.read_tls(&mut slice).unwrap();
        }
        let server_result = s.process_new_packets().map(|_| ());
        let mut back = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut back).unwrap();
        }
        let mut slice = &back[..];
        while !slice.is_empty() {
            c.read_tls(&mut slice).unwrap();
        }
        c.process_new_packets()?;
        server_result?;
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(());
        }
    }
    panic!("handshake did not finish");
}

struct Pki {
    _dir: tempfile::TempDir,
    ca: Written,
    server: Written,
    client: Written,
    other_server: Written,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = create_ca(dir.path(), "consul", 30).unwrap();
    let server = cert(dir.path(), &ca, CertKind::Server);
    let client = cert(dir.path(), &ca, CertKind::Client);
    let other_dir = dir.path().join("other");
    std::fs::create_dir(&other_dir).unwrap();
    let other_ca = create_ca(&other_dir, "consul", 30).unwrap();
    let other_server = cert(&other_dir, &other_ca, CertKind::Server);
    Pki {
        _dir: dir,
        ca,
        server,
        client,
        other_server,
    }
}

fn load(s: &TlsSurface) -> Arc<Configs> {
    SurfaceTls::load(s, &server_name("dc1", "consul."))
        .unwrap()
        .current()
}

#[test]
fn files_are_named_as_consul_names_them_and_keys_are_private() {
    let p = pki();
    assert!(p.ca.cert.ends_with("consul-agent-ca.pem"));
    assert!(p.ca.key.ends_with("consul-agent-ca-key.pem"));
    assert!(p.server.cert.ends_with("dc1-server-consul-0.pem"));
    assert!(p.server.key.ends_with("dc1-server-consul-0-key.pem"));
    assert!(p.client.cert.ends_with("dc1-client-consul-0.pem"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&p.server.key)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = create_ca(p.ca.cert.parent().unwrap(), "consul", 30).unwrap_err();
    assert!(again.contains("consul-agent-ca.pem"), "{again}");
    let der = |w: &Written| {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_file(&w.cert).unwrap()
    };
    assert!(certificate_names(&der(&p.server), "server.dc1.consul"));
    assert!(certificate_names(&der(&p.server), "localhost"));
    assert!(!certificate_names(&der(&p.client), "server.dc1.consul"));
    assert!(certificate_names(&der(&p.client), "client.dc1.consul"));
}

#[test]
fn servers_prove_their_name_and_callers_their_ca() {
    let p = pki();
    let server = load(&surface(&p.ca, &p.server, true, true));
    let client = load(&surface(&p.ca, &p.client, true, true));
    let listener = server.server.clone().unwrap();
    handshake(client.client.clone().unwrap(), listener.clone()).expect("client cert to server");
    handshake(server.strict_client.clone().unwrap(), listener.clone()).expect("server to server");

    // A client certificate cannot pass for a server.
    let fake = client.server.clone().unwrap();
    let err = handshake(server.strict_client.clone().unwrap(), fake.clone()).unwrap_err();
    assert!(format!("{err:?}").contains("NotValidForName"), "{err:?}");
    // Without verify_server_hostname only the chain is checked.
    let lax = load(&surface(&p.ca, &p.server, true, false));
    handshake(lax.client.clone().unwrap(), fake).expect("name-blind dialer");

    // Another CA's server certificate is refused either way.
    let other = load(&TlsSurface {
        ca_file: Some(p.ca.cert.clone()),
        ..surface(&p.ca, &p.other_server, false, true)
    });
    let err = handshake(lax.client.clone().unwrap(), other.server.clone().unwrap()).unwrap_err();
    assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");
    // ... and as a caller, under verify_incoming.
    assert!(handshake(other.client.clone().unwrap(), listener.clone()).is_err());

    // No certificate at all: refused under verify_incoming, let in without.
    let bare = load(&TlsSurface {
        cert_file: None,
        key_file: None,
        ..surface(&p.ca, &p.client, false, true)
    });
    assert!(handshake(bare.client.clone().unwrap(), listener).is_err());
    let open = load(&surface(&p.ca, &p.server, false, true));
    handshake(bare.client.clone().unwrap(), open.server.clone().unwrap())
        .expect("no client cert without verify_incoming");
}

#[test]
fn bad_files_name_the_key_and_path_and_reload_keeps_the_last_good() {
    let p = pki();
    let mismatched = TlsSurface {
        key_file: Some(p.client.key.clone()),
        ..surface(&p.ca, &p.server, true, true)
    };
    let err = SurfaceTls::load(&mismatched, "server.dc1.consul")
        .err()
        .unwrap();
    assert_eq!(err.key, "tls.internal_rpc.key_file");
    assert!(err.reason.contains("does not go with cert_file"), "{err}");
    let missing = TlsSurface {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..surface(&p.ca, &p.server, true, true)
    };
    let err = SurfaceTls::load(&missing, "server.dc1.consul")
        .err()
        .unwrap();
    assert_eq!(
        err.to_string().split(": ").next().unwrap(),
        "tls.internal_rpc.ca_file /nonexistent/ca.pem"
    );

    // Reload: same files change nothing; a bad file keeps the old configs;
    // new good files take over.
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("agent.pem");
    let key_path = dir.path().join("agent-key.pem");
    std::fs::copy(&p.server.cert, &cert_path).unwrap();
    std::fs::copy(&p.server.key, &key_path).unwrap();
    let live = TlsSurface {
        cert_file: Some(cert_path.clone()),
        key_file: Some(key_path.clone()),
        ..surface(&p.ca, &p.server, true, true)
    };
    let tls = SurfaceTls::load(&live, "server.dc1.consul").unwrap();
    assert_eq!(tls.reload(), Ok(false));
    let before = tls.current();
    std::fs::write(&cert_path, "garbage").unwrap();
    assert!(tls.reload().is_err());
    assert!(Arc::ptr_eq(&before, &tls.current()), "last good kept");
    std::fs::copy(&p.client.cert, &cert_path).unwrap();
    std::fs::copy(&p.client.key, &key_path).unwrap();
    assert_eq!(tls.reload(), Ok(true));
    let strict = load(&surface(&p.ca, &p.server, true, true));
    // The listener now presents the client certificate: not a server.
    assert!(handshake(
        strict.strict_client.clone().unwrap(),
        tls.current().server.clone().unwrap()
    )
    .is_err());
}

#[test]
fn cipher_suites_and_versions_are_checked() {
    let p = pki();
    let named = TlsSurface {
        cipher_suites: vec!["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into()],
        ..surface(&p.ca, &p.server, false, false)
    };
    assert!(SurfaceTls::load(&named, "x").is_ok());
    let unknown = TlsSurface {
        cipher_suites: vec!["TLS_RSA_WITH_RC4_128_SHA".into()],
        ..surface(&p.ca, &p.server, false, false)
    };
    let err = SurfaceTls::load(&unknown, "x").err().unwrap();
    assert_eq!(err.key, "tls.internal_rpc.tls_cipher_suites");
    assert!(err.reason.contains("TLS_RSA_WITH_RC4_128_SHA"), "{err}");
}
