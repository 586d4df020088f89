//! The Connect CA: created on first leadership, SPIFFE leaves verified by
//! openssl against the published bundle, bad configurations refused with the
//! CA unchanged, staged rotation (generated → user-supplied → generated)
//! with re-issue and retirement, and a leader failover mid-rotation.

use std::path::Path;
use std::process::Command as Std;
use std::time::Duration;

use mesh_testkit::{eventually, TestAgent, TestCluster};
use serde_json::{json, Value};

use crate::http;

const WAIT: Duration = Duration::from_secs(20);

async fn get(c: &reqwest::Client, url: String) -> Value {
    c.get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or(Value::Null)
}

async fn roots(c: &reqwest::Client, a: &TestAgent) -> Value {
    eventually("CA initialised", WAIT, || async {
        let v = get(c, a.url("/v1/connect/ca/roots")).await;
        v["ActiveRootID"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
            .then_some(v)
    })
    .await
}

pub(crate) fn openssl(args: &[&str], dir: &Path) -> String {
    let out = Std::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `openssl verify` of a leaf (with the chain it presents) against a bundle.
fn verifies(dir: &Path, bundle: &str, cert_pem: &str) -> bool {
    std::fs::write(dir.join("bundle.pem"), bundle).unwrap();
    let mut certs: Vec<String> = cert_pem
        .split_inclusive("-----END CERTIFICATE-----\n")
        .map(str::to_string)
        .collect();
    let leaf = certs.remove(0);
    std::fs::write(dir.join("leaf.pem"), leaf).unwrap();
    std::fs::write(dir.join("chain.pem"), certs.concat()).unwrap();
    let mut args = vec!["verify", "-purpose", "sslclient", "-CAfile", "bundle.pem"];
    if !certs.is_empty() {
        args.extend(["-untrusted", "chain.pem"]);
    }
    args.push("leaf.pem");
    openssl(&args, dir).contains("leaf.pem: OK")
}

fn bundle(roots: &Value) -> String {
    roots["Roots"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            std::iter::once(r["RootCert"].as_str().unwrap().to_string()).chain(
                r["IntermediateCerts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_str().unwrap().to_string()),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn leaf(c: &reqwest::Client, a: &TestAgent, svc: &str) -> Value {
    get(c, a.url(&format!("/v1/agent/connect/ca/leaf/{svc}"))).await
}

async fn put_config(c: &reqwest::Client, a: &TestAgent, body: Value) -> (u16, String) {
    let r = c
        .put(a.url("/v1/connect/ca/configuration"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A user CA made with openssl (EC P-256, CA:true, SPIFFE URI of `td`).
pub(crate) fn user_ca(dir: &Path, name: &str, td: &str, is_ca: bool) -> (String, String) {
    let key = format!("{name}.key");
    let crt = format!("{name}.crt");
    openssl(
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &key,
        ],
        dir,
    );
    let san = format!("subjectAltName=URI:spiffe://{td}");
    let constraints = if is_ca {
        "basicConstraints=critical,CA:TRUE"
    } else {
        "basicConstraints=critical,CA:FALSE"
    };
    let args = vec![
        "req",
        "-x509",
        "-new",
        "-key",
        &key,
        "-out",
        &crt,
        "-days",
        "3650",
        "-subj",
        "/CN=User Root",
        "-addext",
        constraints,
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-addext",
        &san,
    ];
    openssl(&args, dir);
    (
        std::fs::read_to_string(dir.join(&crt)).unwrap(),
        std::fs::read_to_string(dir.join(&key)).unwrap(),
    )
}

/// A CA certificate (with our SPIFFE URI) that expired in 2021, made with
/// rcgen because openssl 3.0's CLI cannot back-date a certificate.
fn expired_ca(td: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params.subject_alt_names = vec![rcgen::SanType::URI(
        rcgen::string::Ia5String::try_from(format!("spiffe://{td}")).unwrap(),
    )];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn leaves_verify_and_bad_configurations_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = crate::dev_agent("node1", &dir.path().join("data")).await;
    let c = http();
    let r = roots(&c, &a).await;
    let td = r["TrustDomain"].as_str().unwrap().to_string();
    assert!(td.ends_with(".consul") && td.len() == 36 + 7, "{td}");
    let active = r["ActiveRootID"].as_str().unwrap().to_string();
    let text = serde_json::to_string(&r).unwrap()
        + &serde_json::to_string(&get(&c, a.url("/v1/connect/ca/configuration")).await).unwrap();
    assert!(
        !text.contains("PRIVATE KEY"),
        "no read endpoint serves a CA key"
    );

    let l = leaf(&c, &a, "web").await;
    assert_eq!(
        l["ServiceURI"],
        format!("spiffe://{td}/ns/default/dc/dc1/svc/web")
    );
    assert!(verifies(
        dir.path(),
        &bundle(&r),
        l["CertPEM"].as_str().unwrap()
    ));
    std::fs::write(dir.path().join("leaf.pem"), l["CertPEM"].as_str().unwrap()).unwrap();
    let text = openssl(
        &[
            "x509",
            "-in",
            "leaf.pem",
            "-noout",
            "-ext",
            "subjectAltName",
        ],
        dir.path(),
    );
    assert!(
        text.contains(&format!("URI:spiffe://{td}/ns/default/dc/dc1/svc/web")),
        "{text}"
    );
    // Cached: the same leaf until renewal.
    assert_eq!(leaf(&c, &a, "web").await["SerialNumber"], l["SerialNumber"]);
    // The PEM bundle form.
    let pem = c
        .get(a.url("/v1/connect/ca/roots?pem=true"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));

    // Bad input: 400 with what is wrong, CA unchanged.
    let (cert, key) = user_ca(dir.path(), "good", &td, true);
    let (other_cert, _) = user_ca(dir.path(), "other", &td, true);
    let (leafish, leafish_key) = user_ca(dir.path(), "notca", &td, false);
    let san = format!("subjectAltName=URI:spiffe://{td}");
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "rsa.key",
            "-out",
            "rsa.crt",
            "-days",
            "365",
            "-subj",
            "/CN=RSA Root",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-addext",
            &san,
        ],
        dir.path(),
    );
    let rsa_key = std::fs::read_to_string(dir.path().join("rsa.key")).unwrap();
    let rsa_cert = std::fs::read_to_string(dir.path().join("rsa.crt")).unwrap();
    let (expired, expired_key) = expired_ca(&td);
    let cases = [
        (
            json!({"Provider": "consul", "Config": {"PrivateKey": expired_key, "RootCert": expired}}),
            "expired",
        ),
        (
            json!({"Provider": "consul", "Config": {"PrivateKey": "garbage", "RootCert": cert}}),
            "PrivateKey",
        ),
        (
            json!({"Provider": "consul", "Config": {"PrivateKey": key, "RootCert": other_cert}}),
            "match",
        ),
        (
            json!({"Provider": "consul", "Config": {"PrivateKey": leafish_key, "RootCert": leafish}}),
            "CA",
        ),
        (
            json!({"Provider": "consul", "Config": {"PrivateKeyType": "ec", "PrivateKeyBits": 256, "PrivateKey": rsa_key, "RootCert": rsa_cert}}),
            "rsa",
        ),
        (
            json!({"Provider": "consul", "Config": {"LeafCertTTL": "10m"}}),
            "LeafCertTTL",
        ),
        (json!({"Provider": "vault"}), "vault"),
    ];
    for (body, needle) in cases {
        let (status, text) = put_config(&c, &a, body.clone()).await;
        assert_eq!(status, 400, "{body}: {text}");
        assert!(
            text.to_lowercase().contains(&needle.to_lowercase()),
            "{needle:?} in {text}"
        );
    }
    let after = get(&c, a.url("/v1/connect/ca/roots")).await;
    assert_eq!(after["ActiveRootID"], active.as_str());
    assert_eq!(after["Roots"].as_array().unwrap().len(), 1);
}

async fn wait_active(c: &reqwest::Client, a: &TestAgent, not: &str) -> Value {
    eventually("new root active", WAIT, || async {
        let v = get(c, a.url("/v1/connect/ca/roots")).await;
        (v["ActiveRootID"]
            .as_str()
            .is_some_and(|id| !id.is_empty() && id != not))
        .then_some(v)
    })
    .await
}

#[tokio::test]
async fn staged_rotation_generated_to_user_supplied_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let a = crate::dev_agent("node1", &dir.path().join("data")).await;
    let c = http();
    let r0 = roots(&c, &a).await;
    let td = r0["TrustDomain"].as_str().unwrap().to_string();
    let old_id = r0["ActiveRootID"].as_str().unwrap().to_string();
    let old_leaf = leaf(&c, &a, "web").await;
    let fast = json!({"RotationPendingPeriod": "1s", "RotationSpreadWindow": "1s"});

    // → user-supplied root.
    let (cert, key) = user_ca(dir.path(), "user", &td, true);
    let mut body = json!({"Provider": "consul", "Config": {"PrivateKey": key, "RootCert": cert}});
    body.as_object_mut()
        .unwrap()
        .extend(fast.as_object().unwrap().clone());
    let (status, text) = put_config(&c, &a, body).await;
    assert_eq!(status, 200, "{text}");
    // Pending: both roots trusted, the old one still signs.
    let pending = get(&c, a.url("/v1/connect/ca/roots")).await;
    assert_eq!(pending["Roots"].as_array().unwrap().len(), 2);
    let status = get(&c, a.url("/v1/connect/ca/rotation")).await;
    assert!(
        matches!(
            status["Stage"].as_str(),
            Some("pending" | "reissuing" | "active")
        ),
        "{status}"
    );
    assert!(verifies(
        dir.path(),
        &bundle(&pending),
        old_leaf["CertPEM"].as_str().unwrap()
    ));

    let r1 = wait_active(&c, &a, &old_id).await;
    let new_id = r1["ActiveRootID"].as_str().unwrap().to_string();
    // The cached leaf is re-issued within the spread window; a blocking query wakes for it.
    let index = leaf(&c, &a, "web").await["ModifyIndex"].as_u64().unwrap();
    let reissued = eventually("leaf re-issued by the new root", WAIT, || async {
        let l = get(
            &c,
            a.url(&format!(
                "/v1/agent/connect/ca/leaf/web?index={index}&wait=5s"
            )),
        )
        .await;
        (l["RootID"] == new_id.as_str()).then_some(l)
    })
    .await;
    // New leaves verify against the bundle, and against the *old* root alone
    // through the cross-signed intermediate they present.
    assert!(verifies(
        dir.path(),
        &bundle(&r1),
        reissued["CertPEM"].as_str().unwrap()
    ));
    assert!(
        verifies(
            dir.path(),
            r0["Roots"][0]["RootCert"].as_str().unwrap(),
            reissued["CertPEM"].as_str().unwrap()
        ),
        "old clients trust new leaves"
    );
    assert!(
        verifies(
            dir.path(),
            &bundle(&r1),
            old_leaf["CertPEM"].as_str().unwrap()
        ),
        "old leaves still trusted"
    );
    let progress = eventually("progress complete", WAIT, || async {
        let s = get(&c, a.url("/v1/connect/ca/rotation")).await;
        (s["Total"].as_u64() > Some(0) && s["Reissued"] == s["Total"]).then_some(s)
    })
    .await;
    assert_eq!(progress["NewRootID"], new_id.as_str());

    // Retire: the old root leaves the bundle and its leaves stop verifying.
    let r = c
        .post(a.url("/v1/connect/ca/rotation/retire"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r2 = get(&c, a.url("/v1/connect/ca/roots")).await;
    assert_eq!(r2["Roots"].as_array().unwrap().len(), 1);
    assert!(!verifies(
        dir.path(),
        &bundle(&r2),
        old_leaf["CertPEM"].as_str().unwrap()
    ));
    assert!(verifies(
        dir.path(),
        &bundle(&r2),
        reissued["CertPEM"].as_str().unwrap()
    ));

    // → back to a generated root (EC P-384 this time).
    let mut body =
        json!({"Provider": "consul", "Config": {"PrivateKeyType": "ec", "PrivateKeyBits": 384}});
    body.as_object_mut()
        .unwrap()
        .extend(fast.as_object().unwrap().clone());
    let (status, text) = put_config(&c, &a, body).await;
    assert_eq!(status, 200, "{text}");
    let r3 = wait_active(&c, &a, &new_id).await;
    let back = eventually("leaf from the generated root", WAIT, || async {
        let l = leaf(&c, &a, "web").await;
        (l["RootID"] == r3["ActiveRootID"]).then_some(l)
    })
    .await;
    assert!(verifies(
        dir.path(),
        &bundle(&r3),
        back["CertPEM"].as_str().unwrap()
    ));
}

#[tokio::test]
async fn rotation_completes_across_a_leader_failover() {
    let mut cluster = TestCluster::start(3).await.unwrap();
    let c = http();
    let leader = cluster.wait_for_leader(WAIT).await;
    let r0 = roots(&c, &cluster.agents[leader]).await;
    let old_id = r0["ActiveRootID"].as_str().unwrap().to_string();
    // A long pending period, so the failover lands mid-rotation.
    let body = json!({"Provider": "consul", "Config": {"PrivateKeyType": "ec", "PrivateKeyBits": 384},
                      "RotationPendingPeriod": "3s", "RotationSpreadWindow": "1s"});
    let (status, text) = put_config(&c, &cluster.agents[leader], body).await;
    assert_eq!(status, 200, "{text}");
    cluster.agents[leader].kill().await;
    let survivor = (0..3).find(|i| *i != leader).unwrap();
    cluster.wait_for_new_leader(leader, WAIT).await;
    let r1 = wait_active(&c, &cluster.agents[survivor], &old_id).await;
    assert_eq!(
        r1["Roots"].as_array().unwrap().len(),
        2,
        "old root retired, still trusted"
    );
    // Every surviving server signs with the new root.
    for i in (0..3).filter(|i| *i != leader) {
        let l = leaf(&c, &cluster.agents[i], "db").await;
        assert_eq!(l["RootID"], r1["ActiveRootID"]);
    }
}

/// `CSRMaxPerSecond` is enforced: past a second's burst, signings wait their
/// turn and, beyond the wait bound, get 429 with the reason; 0 lifts it.
#[tokio::test]
async fn leaf_signing_respects_csr_max_per_second() {
    let dir = tempfile::tempdir().unwrap();
    let a = crate::dev_agent("node1", dir.path()).await;
    let c = http();
    roots(&c, &a).await;
    let (status, body) = put_config(
        &c,
        &a,
        json!({"Provider": "consul", "Config": {"CSRMaxPerSecond": 1}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let burst: Vec<_> = (0..20)
        .map(|i| {
            let url = a.url(&format!("/v1/agent/connect/ca/leaf/limited{i}"));
            let c = c.clone();
            tokio::spawn(async move {
                let r = c.get(url).send().await.unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for b in burst {
        answers.push(b.await.unwrap());
    }
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    let limited: Vec<_> = answers.iter().filter(|(s, _)| *s == 429).collect();
    // One at once, then one a second for the 2 s a request may wait: most of
    // 20 at once are refused, whatever the machine's speed.
    assert!(ok >= 1 && !limited.is_empty(), "{answers:?}");
    assert!(ok < 20 / 2, "{ok} of 20 signed at 1/s");
    assert_eq!(ok + limited.len(), 20, "{answers:?}");
    assert!(limited[0].1.contains("CSRMaxPerSecond"), "{answers:?}");

    // Cached leaves are not signings: asking again for a signed one is free.
    let signed = answers.iter().position(|(s, _)| *s == 200).unwrap();
    let r = c
        .get(a.url(&format!("/v1/agent/connect/ca/leaf/limited{signed}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let (status, body) = put_config(
        &c,
        &a,
        json!({"Provider": "consul", "Config": {"CSRMaxPerSecond": 0}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for i in 0..8 {
        let r = c
            .get(a.url(&format!("/v1/agent/connect/ca/leaf/free{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "no limit with 0");
    }
}
