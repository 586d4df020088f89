//! The HTTPS API: a certificate from config, the CLI and terraform
//! verifying it with a CA file, and clear errors for bad setups.

use std::path::{Path, PathBuf};

use mesh_testkit::{AgentSpec, TestAgent};

/// A CA and a server certificate for 127.0.0.1/localhost, made by openssl.
fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    // The last argument of each step is the file it writes.
    let run = |args: &[&str]| {
        let out = crate::ca::openssl(args, dir);
        let made = dir.join(args.last().expect("an output file"));
        assert!(made.exists(), "openssl {args:?}: {out}");
    };
    run(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "ca.key",
    ]);
    run(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-subj",
        "/CN=mesh test CA",
        "-days",
        "2",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "server.key",
    ]);
    run(&[
        "req",
        "-new",
        "-key",
        "server.key",
        "-subj",
        "/CN=server.dc1.consul",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

async fn https_agent(dir: &Path) -> (TestAgent, PathBuf) {
    let (ca, cert, key) = make_certs(dir);
    let conf = dir.join("tls.hcl");
    std::fs::write(
        &conf,
        format!(
            "tls {{\n  defaults {{\n    ca_file   = \"{}\"\n    cert_file = \"{}\"\n    key_file  = \"{}\"\n  }}\n}}\n",
            ca.display(),
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let mut spec = AgentSpec::server("tls1", 1);
    spec.extra = vec![
        "-dev".into(),
        "-https-port=0".into(),
        format!("-config-file={}", conf.display()),
    ];
    let a = TestAgent::start(spec, &dir.join("data")).await.unwrap();
    (a, ca)
}

#[tokio::test]
async fn the_api_serves_https_and_clients_verify_it_with_a_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let (a, ca) = https_agent(dir.path()).await;
    let https = a.https.expect("the ready line names the HTTPS address");
    let url = format!("https://127.0.0.1:{}", https.port());
    let ca_flag = format!("-ca-file={}", ca.display());
    let addr_flag = format!("-http-addr={url}");

    let (code, out) = crate::mesh_cli(
        &a,
        &["kv", "put", &addr_flag, &ca_flag, "tls/key", "over-tls"],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    // The same data on the plain port: one router behind both.
    let (code, out) = crate::mesh_cli(&a, &["kv", "get", "tls/key"]).await;
    assert_eq!((code, out.trim()), (0, "over-tls"));

    // Without the CA file the system roots do not know this CA: refused.
    let (code, out) = crate::mesh_cli(&a, &["kv", "get", &addr_flag, "tls/key"]).await;
    assert_ne!(code, 0);
    assert!(out.to_lowercase().contains("certificate"), "{out}");
    // A CA file that is not PEM is named in the error.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let (code, out) = crate::mesh_cli(
        &a,
        &[
            "kv",
            "get",
            &addr_flag,
            &format!("-ca-file={}", junk.display()),
            "tls/key",
        ],
    )
    .await;
    assert_ne!(code, 0);
    assert!(out.contains("junk.pem"), "{out}");
    // Plain HTTP spoken to the TLS port gets nothing back.
    let plain = crate::http()
        .get(format!(
            "http://127.0.0.1:{}/v1/status/leader",
            https.port()
        ))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    // A sidecar polls its snapshot over HTTPS with the same CA file.
    let db = crate::proxy::echo_server().await;
    let reg = serde_json::json!({"Name": "db", "ID": "db", "Port": db.port(), "Address": "127.0.0.1",
        "Connect": {"SidecarService": {"Port": crate::proxy::free_port(), "Address": "127.0.0.1"}}});
    let r = crate::http()
        .put(a.url("/v1/agent/service/register"))
        .json(&reg)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _db_proxy = crate::proxy::connect_proxy(
        &a,
        &["-sidecar-for", "db-sidecar-proxy", &addr_flag, &ca_flag],
    )
    .await;

    // Terraform with `ca_file` and an https:// address.
    crate::terraform::terraform();
    let tf = crate::terraform::Tf::new(dir.path(), "tls");
    tf.write(
        &url,
        "resource \"mesh_kv\" \"k\" {\n  path  = \"tls/tf\"\n  value = \"from terraform\"\n}\n",
    );
    let main = tf.dir.join("main.tf");
    let text = std::fs::read_to_string(&main).unwrap().replace(
        "  address = ",
        &format!("  ca_file = \"{}\"\n  address = ", ca.display()),
    );
    std::fs::write(&main, text).unwrap();
    let r = tf.apply().await;
    assert_eq!(r.code, 0, "{}", r.out);
    assert!(!r.out.contains("ca_file is not used"), "{}", r.out);
    let (code, out) = crate::mesh_cli(&a, &["kv", "get", "tls/tf"]).await;
    assert_eq!((code, out.trim()), (0, "from terraform"));
    assert_eq!(tf.plan().await.code, 0);
}
