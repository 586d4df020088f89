//! The source against a tiny in-test agent that serves blocking queries.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Mutex;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;

/// What the fake agent does for each request, in order; the last repeats.
#[derive(Clone)]
enum Reply {
    /// 200 with this snapshot index.
    Snapshot(u64),
    /// An error status.
    Status(u16),
}

struct Fake {
    replies: Mutex<VecDeque<Reply>>,
    seen: Mutex<Vec<String>>,
}

async fn fake_agent(replies: Vec<Reply>) -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake {
        replies: Mutex::new(replies.into()),
        seen: Mutex::new(Vec::new()),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let f = fake.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let f = f.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let f = f.clone();
                    async move {
                        let token = req
                            .headers()
                            .get("x-consul-token")
                            .map(|v| v.to_str().unwrap().to_string())
                            .unwrap_or_default();
                        f.seen.lock().unwrap().push(format!(
                            "{}?{} token={token}",
                            req.uri().path(),
                            req.uri().query().unwrap_or("")
                        ));
                        let reply = {
                            let mut q = f.replies.lock().unwrap();
                            if q.len() > 1 {
                                q.pop_front().unwrap()
                            } else {
                                q.front().cloned().unwrap()
                            }
                        };
                        let resp = match reply {
                            Reply::Snapshot(i) => {
                                let snap = ProxySnapshot {
                                    proxy_id: "web-proxy".into(),
                                    service: "web".into(),
                                    index: i,
                                    ..Default::default()
                                };
                                Response::builder()
                                    .header("X-Consul-Index", i.to_string())
                                    .body(Full::new(Bytes::from(
                                        serde_json::to_vec(&snap).unwrap(),
                                    )))
                                    .unwrap()
                            }
                            Reply::Status(s) => Response::builder()
                                .status(s)
                                .body(Full::new(Bytes::from_static(b"boom")))
                                .unwrap(),
                        };
                        if matches!(reply, Reply::Snapshot(_))
                            && f.replies.lock().unwrap().len() == 1
                        {
                            // Last scripted answer: behave like a blocking query that times out.
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), fake)
}

fn config(agent: String) -> SourceConfig {
    let mut cfg = SourceConfig::new(agent, "web-proxy");
    cfg.token = Some("secret".into());
    cfg.wait = Duration::from_secs(2);
    cfg.min_backoff = Duration::from_millis(10);
    cfg.max_backoff = Duration::from_millis(40);
    cfg
}

#[tokio::test]
async fn follows_the_index_and_survives_errors() {
    let (agent, fake) = fake_agent(vec![
        Reply::Status(500),
        Reply::Snapshot(5),
        Reply::Status(503),
        Reply::Snapshot(7),
    ])
    .await;
    let (mut rx, task) = spawn(config(agent));
    let snap = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|s| s.index == 7))
        .await
        .expect("snapshot 7 within 5 s")
        .unwrap()
        .clone();
    assert_eq!(snap.service, "web");
    // Wait for one more (repeated) poll to see the index carried forward.
    let seen = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let seen = fake.seen.lock().unwrap().clone();
            if seen.iter().any(|s| s.contains("index=7")) {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("a poll with index=7");
    assert!(
        seen[0].starts_with("/v1/agent/connect/proxy/web-proxy?index=0&wait=2s token=secret"),
        "{seen:?}"
    );
    assert!(seen.iter().any(|s| s.contains("index=5")), "{seen:?}");
    drop(rx);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("source stops when receivers are gone")
        .unwrap();
}

#[tokio::test]
async fn an_index_going_backwards_resets_to_zero() {
    let (agent, fake) = fake_agent(vec![
        Reply::Snapshot(9),
        Reply::Snapshot(3),
        Reply::Snapshot(3),
    ])
    .await;
    let (mut rx, _task) = spawn(config(agent));
    tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|s| s.index == 3))
        .await
        .unwrap()
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let seen = fake.seen.lock().unwrap().clone();
            if seen.len() >= 3 {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert!(seen[1].contains("index=9"), "{seen:?}");
    assert!(seen[2].contains("index=0"), "{seen:?}");
}
