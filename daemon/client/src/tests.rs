//! Client tests against a scripted HTTP server on port 0.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;

/// A request as the fake agent saw it.
#[derive(Debug)]
struct Seen {
    method: String,
    target: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// A canned answer: status, extra headers, body.
type Answer = (u16, Vec<(&'static str, &'static str)>, &'static str);

/// Starts an HTTP server that answers each connection with the next canned answer.
async fn fake_agent(answers: Vec<Answer>) -> (String, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for (status, headers, body) in answers {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let head_end = loop {
                let mut chunk = [0u8; 4096];
                let n = conn.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let mut lines = head.lines();
            let mut request_line = lines.next().unwrap().split(' ');
            let method = request_line.next().unwrap().to_string();
            let target = request_line.next().unwrap().to_string();
            let req_headers: BTreeMap<String, String> = lines
                .filter_map(|l| l.split_once(": "))
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .collect();
            let len: usize = req_headers
                .get("content-length")
                .map_or(0, |v| v.parse().unwrap());
            while buf.len() < head_end + len {
                let mut chunk = [0u8; 4096];
                let n = conn.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
            }
            let req_body = buf[head_end..head_end + len].to_vec();
            tx.send(Seen {
                method,
                target,
                headers: req_headers,
                body: req_body,
            })
            .unwrap();
            let mut resp = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                resp.push_str(&format!("{k}: {v}\r\n"));
            }
            resp.push_str("\r\n");
            resp.push_str(body);
            conn.write_all(resp.as_bytes()).await.unwrap();
        }
    });
    (addr, rx)
}

#[test]
fn addresses_with_and_without_scheme() {
    let c = Client::new("127.0.0.1:8500").unwrap();
    assert_eq!(c.base_url().as_str(), "http://127.0.0.1:8500/");
    let c = Client::new("http://localhost:9/").unwrap();
    assert_eq!(
        c.url(&["status", "leader"]).as_str(),
        "http://localhost:9/v1/status/leader"
    );
    assert!(matches!(Client::new(""), Err(Error::InvalidAddr { .. })));
    assert!(matches!(
        Client::new("ftp://x"),
        Err(Error::InvalidAddr { .. })
    ));
}

#[test]
fn kv_keys_are_escaped_per_segment() {
    let c = Client::new("127.0.0.1:8500").unwrap();
    assert_eq!(
        c.kv_url("/a b/c?d").as_str(),
        "http://127.0.0.1:8500/v1/kv/a%20b/c%3Fd"
    );
    assert_eq!(c.kv_url("").as_str(), "http://127.0.0.1:8500/v1/kv/");
    assert_eq!(
        c.kv_url("dir/").as_str(),
        "http://127.0.0.1:8500/v1/kv/dir/"
    );
}

#[tokio::test]
async fn status_leader_and_token_header() {
    let (addr, mut seen) = fake_agent(vec![(200, vec![], "\"127.0.0.1:8300\"")]).await;
    let client = Client::new(&addr)
        .unwrap()
        .with_token(Some("s3cret".into()));
    assert_eq!(client.status_leader().await.unwrap(), "127.0.0.1:8300");
    let req = seen.recv().await.unwrap();
    assert_eq!(
        (req.method.as_str(), req.target.as_str()),
        ("GET", "/v1/status/leader")
    );
    assert_eq!(
        req.headers.get("x-consul-token").map(String::as_str),
        Some("s3cret")
    );
}

#[tokio::test]
async fn kv_get_reads_index_and_404() {
    let body =
        r#"[{"Key":"a/b","Value":"dmFs","Flags":0,"CreateIndex":3,"ModifyIndex":4,"LockIndex":0}]"#;
    let (addr, mut seen) = fake_agent(vec![
        (
            200,
            vec![("X-Consul-Index", "4"), ("X-Consul-KnownLeader", "true")],
            body,
        ),
        (404, vec![("X-Consul-Index", "9")], ""),
    ])
    .await;
    let client = Client::new(&addr).unwrap();
    let opts = QueryOptions {
        consistency: Consistency::Stale,
        index: Some(3),
        wait: Some(Duration::from_secs(2)),
    };
    let (pair, meta) = client.kv_get("a/b", &opts).await.unwrap();
    assert_eq!(pair.unwrap().value.as_deref(), Some(&b"val"[..]));
    assert_eq!(meta.index, 4);
    assert!(meta.known_leader);
    let req = seen.recv().await.unwrap();
    assert_eq!(req.target, "/v1/kv/a/b?stale&index=3&wait=2000ms");

    let (pair, meta) = client
        .kv_get("missing", &QueryOptions::default())
        .await
        .unwrap();
    assert_eq!((pair, meta.index), (None, 9));
    assert_eq!(seen.recv().await.unwrap().target, "/v1/kv/missing");
}

#[tokio::test]
async fn stale_reads_and_datacenter_go_on_every_read() {
    let (addr, mut seen) = fake_agent(vec![
        (404, vec![], ""),
        (404, vec![], ""),
        (200, vec![], "true"),
    ])
    .await;
    let client = Client::new(&addr)
        .unwrap()
        .with_datacenter(Some("dc1".into()))
        .with_stale_reads(true);
    let consistent = QueryOptions {
        consistency: Consistency::Consistent,
        ..QueryOptions::default()
    };
    client.kv_get("a", &QueryOptions::default()).await.unwrap();
    assert_eq!(seen.recv().await.unwrap().target, "/v1/kv/a?dc=dc1&stale");
    // A read that names its own mode keeps it.
    client.kv_get("a", &consistent).await.unwrap();
    assert_eq!(
        seen.recv().await.unwrap().target,
        "/v1/kv/a?dc=dc1&consistent"
    );
    // Writes never carry ?stale.
    client.kv_put("a", b"v".to_vec(), None, None).await.unwrap();
    assert_eq!(seen.recv().await.unwrap().target, "/v1/kv/a?dc=dc1");
}

#[tokio::test]
async fn kv_list_keys_put_delete() {
    let (addr, mut seen) = fake_agent(vec![
        (404, vec![], ""),
        (200, vec![], r#"["a/","b"]"#),
        (200, vec![], "false"),
        (200, vec![], "true"),
    ])
    .await;
    let client = Client::new(&addr).unwrap();
    let none = QueryOptions::default();
    assert!(client.kv_list("p", &none).await.unwrap().0.is_empty());
    assert_eq!(seen.recv().await.unwrap().target, "/v1/kv/p?recurse");

    let (keys, _) = client.kv_keys("", Some("/"), &none).await.unwrap();
    assert_eq!(keys, ["a/", "b"]);
    assert_eq!(
        seen.recv().await.unwrap().target,
        "/v1/kv/?keys&separator=%2F"
    );

    assert!(!client
        .kv_put("k", b"v\x00".to_vec(), Some(42), Some(0))
        .await
        .unwrap());
    let req = seen.recv().await.unwrap();
    assert_eq!(
        (req.method.as_str(), req.target.as_str()),
        ("PUT", "/v1/kv/k?flags=42&cas=0")
    );
    assert_eq!(req.body, b"v\x00");

    assert!(client.kv_delete("dir", true, None).await.unwrap());
    let req = seen.recv().await.unwrap();
    assert_eq!(
        (req.method.as_str(), req.target.as_str()),
        ("DELETE", "/v1/kv/dir?recurse")
    );
}

#[tokio::test]
async fn errors_carry_status_and_message() {
    let (addr, _seen) = fake_agent(vec![(403, vec![], "Permission denied")]).await;
    let err = Client::new(&addr).unwrap().members().await.unwrap_err();
    assert_eq!(err.status(), Some(403));
    assert_eq!(
        err.to_string(),
        "Unexpected response code: 403 (Permission denied)"
    );
}

#[tokio::test]
async fn connection_refused_names_the_address() {
    // Bind and drop to get a port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = Client::new(&format!("127.0.0.1:{port}"))
        .unwrap()
        .leave()
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Connect { .. }), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("-http-addr"), "{text}");
}

#[tokio::test]
async fn members_and_raft_configuration() {
    let (addr, _seen) = fake_agent(vec![
        (200, vec![], r#"[{"Name":"n1","Addr":"10.0.0.1","Port":8301,"Tags":{"role":"consul","dc":"dc1"},"Status":1,"State":"alive"}]"#),
        (200, vec![], r#"{"Servers":[{"ID":"x","Node":"n1","Address":"10.0.0.1:8300","Leader":true,"Voter":true}],"Index":12}"#),
        (200, vec![], r#"["10.0.0.1:8300"]"#),
    ])
    .await;
    let client = Client::new(&addr).unwrap();
    let members = client.members().await.unwrap();
    assert_eq!(members[0].name, "n1");
    assert_eq!(members[0].status_name(), "alive");
    let raft = client.raft_configuration().await.unwrap();
    assert_eq!(raft.index, 12);
    assert_eq!(client.status_peers().await.unwrap(), ["10.0.0.1:8300"]);
}

#[test]
fn token_files_and_ssl_read_as_consul_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("token");
    std::fs::write(&f, "  s3cret \nsecond line\n").unwrap();
    assert_eq!(super::token_from_file(&f).as_deref(), Some("s3cret"));
    std::fs::write(&f, "\n").unwrap();
    assert_eq!(super::token_from_file(&f), None);
    assert_eq!(
        super::with_ssl_scheme("a:8501".into(), true),
        "https://a:8501"
    );
    assert_eq!(
        super::with_ssl_scheme("http://a:8500".into(), true),
        "http://a:8500"
    );
    assert_eq!(super::with_ssl_scheme("a:8500".into(), false), "a:8500");
}
