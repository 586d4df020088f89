//! Three servers, each in its own network namespace on a bridge, under
//! concurrent KV reads, writes and compare-and-sets while the leader is
//! killed with -9 and restarted, and a server is cut off with iptables and
//! healed. Every key's recorded history must be linearizable, the cut-off
//! server must refuse writes, and the servers must agree at the end.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mesh_testkit::{eventually, mesh_bin};

use crate::linearizable::{check, Kind, Op};
use crate::sh;

/// Namespaces s0..s2 joined by a bridge that this process also sits on;
/// removed on drop with the agents inside.
struct Lab {
    dir: tempfile::TempDir,
    id: u32,
    agents: Vec<Option<Child>>,
}

const SERVERS: usize = 3;

impl Lab {
    fn new() -> Result<Lab, String> {
        let id = std::process::id() % 10_000;
        let lab = Lab {
            dir: tempfile::tempdir().map_err(|e| e.to_string())?,
            id,
            agents: (0..SERVERS).map(|_| None).collect(),
        };
        let bridge = lab.bridge();
        sh(&["ip", "link", "add", &bridge, "type", "bridge"])?;
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", lab.ip(254)),
            "dev",
            &bridge,
        ])?;
        sh(&["ip", "link", "set", &bridge, "up"])?;
        for i in 0..SERVERS {
            let ns = lab.ns(i);
            let (outside, inside) = (format!("ml{id}o{i}"), format!("ml{id}i{i}"));
            sh(&["ip", "netns", "add", &ns])?;
            sh(&[
                "ip", "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ])?;
            sh(&["ip", "link", "set", &inside, "netns", &ns])?;
            sh(&["ip", "link", "set", &outside, "master", &bridge])?;
            sh(&["ip", "link", "set", &outside, "up"])?;
            let addr = format!("{}/24", lab.ip(i as u8 + 1));
            sh(&["ip", "-n", &ns, "addr", "add", &addr, "dev", &inside])?;
            sh(&["ip", "-n", &ns, "link", "set", &inside, "up"])?;
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(lab)
    }

    fn bridge(&self) -> String {
        format!("mlbr{}", self.id)
    }

    fn ns(&self, i: usize) -> String {
        format!("mlab{}s{i}", self.id)
    }

    fn ip(&self, host: u8) -> String {
        format!("10.214.{}.{host}", self.id % 250)
    }

    fn server_ip(&self, i: usize) -> String {
        self.ip(i as u8 + 1)
    }

    fn url(&self, i: usize, path: &str) -> String {
        format!("http://{}:8500{path}", self.server_ip(i))
    }

    /// Start (or restart, with the same data) server `i` in its namespace.
    fn start(&mut self, i: usize) {
        let ip = self.server_ip(i);
        let mut args = vec![
            "netns".to_string(),
            "exec".into(),
            self.ns(i),
            mesh_bin().display().to_string(),
            "agent".into(),
            format!("-node=s{i}"),
            "-server".into(),
            format!("-bootstrap-expect={SERVERS}"),
            format!(
                "-data-dir={}",
                self.dir.path().join(format!("s{i}")).display()
            ),
            format!("-bind={ip}"),
            format!("-client={ip}"),
            "-dns-port=-1".into(),
            "-grpc-port=-1".into(),
            "-retry-interval=1s".into(),
        ];
        for j in (0..SERVERS).filter(|&j| j != i) {
            args.push(format!("-retry-join={}:8301", self.server_ip(j)));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("s{i}.log")))
            .unwrap();
        let child = Command::new("ip")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn a server in its namespace");
        self.agents[i] = Some(child);
    }

    /// kill -9 (`ip netns exec` runs the agent in its own process).
    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.agents[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Drop everything between server `i` and the other servers (the test
    /// client on the bridge still reaches it).
    fn isolate(&self, i: usize, cut: bool) {
        let op = if cut { "-I" } else { "-D" };
        for j in (0..SERVERS).filter(|&j| j != i) {
            for (chain, dir) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
                sh(&[
                    "ip",
                    "netns",
                    "exec",
                    &self.ns(i),
                    "iptables",
                    op,
                    chain,
                    dir,
                    &self.server_ip(j),
                    "-j",
                    "DROP",
                ])
                .expect("iptables in the namespace");
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for i in 0..SERVERS {
            self.kill(i);
        }
        for i in 0..SERVERS {
            let _ = sh(&["ip", "netns", "del", &self.ns(i)]);
        }
        let _ = sh(&["ip", "link", "del", &self.bridge()]);
    }
}

/// The index of the server the cluster names as leader, as `from` sees it.
async fn leader(c: &reqwest::Client, lab: &Lab, from: usize) -> Option<usize> {
    let text = c
        .get(lab.url(from, "/v1/status/leader"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let ip = text.trim().trim_matches('"').split(':').next()?.to_string();
    (0..SERVERS).find(|&i| lab.server_ip(i) == ip)
}

const KEYS: [&str; 3] = ["lin/a", "lin/b", "lin/c"];

/// One client's loop: random operations on random keys through random
/// servers until `stop`; every operation recorded with its outcome.
async fn client(
    lab: Arc<Vec<String>>,
    seed: u64,
    start: Instant,
    stop: Arc<std::sync::atomic::AtomicBool>,
    history: Arc<Mutex<Vec<Vec<Op>>>>,
    next_value: Arc<std::sync::atomic::AtomicU32>,
) {
    let c = crate::http();
    let mut rng = seed;
    let mut rand = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let now = || start.elapsed().as_micros() as u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let k = rand(KEYS.len() as u64) as usize;
        let base = &lab[rand(lab.len() as u64) as usize];
        let url = format!("{base}/v1/kv/{}", KEYS[k]);
        let call = now();
        let record = |op: Op| history.lock().unwrap()[k].push(op);
        match rand(10) {
            // Reads ask for ?consistent: the leader confirms it still leads.
            0..=4 => {
                let got = c.get(format!("{url}?consistent")).send().await;
                let value = match got {
                    Ok(r) if r.status() == 404 => Some(None),
                    Ok(r) if r.status() == 200 => {
                        let v: serde_json::Value = r.json().await.unwrap_or_default();
                        v[0]["Value"].as_str().map(|b64| Some(decode(b64)))
                    }
                    // A failed read changed nothing: left out.
                    _ => None,
                };
                if let Some(value) = value {
                    record(Op {
                        call,
                        ret: Some(now()),
                        kind: Kind::Read(value),
                    });
                }
            }
            5..=7 => {
                let v = next_value.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let got = c.put(&url).body(v.to_string()).send().await;
                let ret = match outcome(got).await {
                    Outcome::NotSent => continue,
                    Outcome::Known(true) => Some(now()),
                    Outcome::Known(false) | Outcome::Unknown => None,
                };
                record(Op {
                    call,
                    ret,
                    kind: Kind::Write(v),
                });
            }
            _ => {
                // Read the current value and its index, then CAS on that index.
                let got = c.get(format!("{url}?consistent")).send().await;
                let (expected, index) = match got {
                    Ok(r) if r.status() == 404 => (None, 0),
                    Ok(r) if r.status() == 200 => {
                        let v: serde_json::Value = r.json().await.unwrap_or_default();
                        match (v[0]["Value"].as_str(), v[0]["ModifyIndex"].as_u64()) {
                            (Some(b64), Some(i)) => (Some(decode(b64)), i),
                            _ => continue,
                        }
                    }
                    _ => continue,
                };
                record(Op {
                    call,
                    ret: Some(now()),
                    kind: Kind::Read(expected),
                });
                let v = next_value.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let call = now();
                let got = c
                    .put(format!("{url}?cas={index}"))
                    .body(v.to_string())
                    .send()
                    .await;
                let answer = match outcome(got).await {
                    Outcome::NotSent => continue,
                    Outcome::Known(ok) => Some(ok),
                    Outcome::Unknown => None,
                };
                record(Op {
                    call,
                    ret: answer.map(|_| now()),
                    kind: Kind::Cas {
                        expected,
                        new: v,
                        ok: answer,
                    },
                });
            }
        }
    }
}

fn decode(b64: &str) -> u32 {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    String::from_utf8(bytes).unwrap().parse().unwrap()
}

/// A write's answer.
enum Outcome {
    /// Answered: `true` (applied) or `false` (a CAS that did not match).
    Known(bool),
    /// Never reached a server: certainly not applied.
    NotSent,
    /// May or may not have been applied (a timeout, a reset, a 5xx).
    Unknown,
}

async fn outcome(got: Result<reqwest::Response, reqwest::Error>) -> Outcome {
    match got {
        Err(e) if e.is_connect() => Outcome::NotSent,
        Ok(r) if r.status() == 200 => match r.text().await.as_deref().map(str::trim) {
            Ok("true") => Outcome::Known(true),
            Ok("false") => Outcome::Known(false),
            _ => Outcome::Unknown,
        },
        _ => Outcome::Unknown,
    }
}

#[tokio::test]
async fn kv_stays_linearizable_through_a_leader_kill_and_a_partition() {
    let mut lab = Lab::new().expect("network namespaces and a bridge (run as root; iproute2 and iptables from scripts/setup.sh)");
    for i in 0..SERVERS {
        lab.start(i);
    }
    let c = crate::http();
    let l = &lab;
    eventually(
        "a leader all servers agree on",
        Duration::from_secs(60),
        || async {
            let first = leader(&c, l, 0).await?;
            for i in 1..SERVERS {
                (leader(&c, l, i).await? == first).then_some(())?;
            }
            Some(())
        },
    )
    .await;

    let bases = Arc::new((0..SERVERS).map(|i| lab.url(i, "")).collect::<Vec<_>>());
    let start = Instant::now();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let history = Arc::new(Mutex::new(vec![Vec::new(); KEYS.len()]));
    let next_value = Arc::new(std::sync::atomic::AtomicU32::new(1));
    let clients: Vec<_> = (0..5)
        .map(|n| {
            tokio::spawn(client(
                bases.clone(),
                0x9e37_79b9_7f4a_7c15 ^ (n + 1),
                start,
                stop.clone(),
                history.clone(),
                next_value.clone(),
            ))
        })
        .collect();
    let ops_done = || history.lock().unwrap().iter().map(Vec::len).sum::<usize>();
    eventually("clients under way", Duration::from_secs(20), || async {
        (ops_done() > 100).then_some(())
    })
    .await;

    // kill -9 the leader; the rest elect another and go on.
    let old = leader(&c, &lab, 0).await.expect("a leader");
    lab.kill(old);
    let l = &lab;
    let new = eventually("a new leader", Duration::from_secs(30), || async {
        let n = leader(&c, l, (old + 1) % SERVERS).await?;
        (n != old).then_some(n)
    })
    .await;
    let before = ops_done();
    eventually(
        "progress without the old leader",
        Duration::from_secs(30),
        || async { (ops_done() > before + 100).then_some(()) },
    )
    .await;
    lab.start(old);

    // Cut a follower off: it refuses writes, the majority goes on.
    let cut = (0..SERVERS).find(|&i| i != new && i != old).unwrap();
    lab.isolate(cut, true);
    let refused = c
        .put(lab.url(cut, "/v1/kv/minority/probe"))
        .body("x")
        .send()
        .await;
    assert!(
        !matches!(&refused, Ok(r) if r.status() == 200),
        "a cut-off server acknowledged a write: {refused:?}"
    );
    // Refused for sure (no leader), or sent to the leader before the cut
    // and lost track of: then it may land once the cut heals, and the
    // server says so.
    let definitely_refused = match refused {
        Ok(r) => !r
            .text()
            .await
            .unwrap_or_default()
            .contains("may or may not"),
        Err(_) => false,
    };
    // A third of the requests go to the cut-off server and wait out its
    // leader timeout, so progress is slower here.
    let before = ops_done();
    eventually(
        "progress with a server cut off",
        Duration::from_secs(60),
        || async { (ops_done() > before + 40).then_some(()) },
    )
    .await;
    lab.isolate(cut, false);
    let before = ops_done();
    eventually(
        "progress after healing",
        Duration::from_secs(30),
        || async { (ops_done() > before + 100).then_some(()) },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }

    // The servers converge on the same values, and the probe never landed.
    let l = &lab;
    eventually(
        "every server holds the same values",
        Duration::from_secs(60),
        || async {
            let mut seen = Vec::new();
            for i in 0..SERVERS {
                let text = c
                    .get(l.url(i, "/v1/kv/lin/?recurse&stale"))
                    .send()
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                let v: serde_json::Value = serde_json::from_str(&text).ok()?;
                let values: Vec<String> = v
                    .as_array()?
                    .iter()
                    .map(|e| format!("{}={}", e["Key"], e["Value"]))
                    .collect();
                seen.push(values);
            }
            seen.windows(2).all(|w| w[0] == w[1]).then_some(())
        },
    )
    .await;
    let probe = c
        .get(lab.url(new, "/v1/kv/minority/probe?consistent"))
        .send()
        .await
        .unwrap();
    assert!(
        probe.status() == 404 || !definitely_refused,
        "the refused write must not appear later: {}",
        probe.status()
    );
    assert!(
        [200, 404].contains(&probe.status().as_u16()),
        "the probe reads as written or absent: {}",
        probe.status()
    );

    let history = history.lock().unwrap().clone();
    for (key, ops) in KEYS.iter().zip(&history) {
        assert!(ops.len() > 50, "{key}: only {} operations", ops.len());
        let unknown = ops.iter().filter(|o| o.ret.is_none()).count();
        eprintln!(
            "{key}: {} operations, {unknown} with unknown outcome",
            ops.len()
        );
        if let Err(why) = check(ops) {
            panic!("{key} is not linearizable: {why}\nhistory: {ops:#?}");
        }
    }
}
