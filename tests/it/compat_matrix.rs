//! docs/compatibility.md kept honest (issue #23): its HTTP tables are checked
//! against the routes mesh registers in its source, then asked of a live
//! dev agent row by row.
//!
//! Routes are read from `.route("<literal path>", <method router>)` calls in
//! `daemon/*/src`; a route registered any other way (`nest`, `route_service`,
//! a path built at run time) is not seen, so keep to that form.
//!
//! Telling a route miss from a handler's own 404: a path mesh does not
//! route gets axum's bare 404 (no body, no `Content-Type`, no
//! `X-Consul-Index`). A handler's 404 for a missing object always says
//! something (`Unknown check ID "x"`), and a missing KV key carries
//! `X-Consul-Index`. A routed path asked with a method it lacks is a 405.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode};

/// The matrix, relative to the repository root.
const MATRIX: &str = "docs/compatibility.md";

/// Methods a row may name.
const METHODS: [&str; 6] = ["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD"];

/// Crates whose `.route(` calls are not the agent's HTTP API: `mesh sync`
/// serves consul-terraform-sync's API on a port of its own.
const NOT_THE_AGENT_API: [&str; 1] = ["sync"];

/// Rows not asked of the live agent: `PUT /v1/agent/leave` shuts it down.
const NOT_ASKED: [(&str, &str); 1] = [("PUT", "/v1/agent/leave")];

/// Query strings added so that a request changes nothing: each makes the
/// handler refuse with a 400 once routed.
const QUERIES: [(&str, &str, &str); 1] = [
    // Without `?id=`, leadership would go to "the most caught-up" voter.
    (
        "POST",
        "/v1/operator/raft/transfer-leader",
        "?id=not-a-raft-id",
    ),
];

/// The repository root: the tests crate is `tests/` in it.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits inside the repository")
        .to_path_buf()
}

fn read_matrix() -> String {
    let path = repo_root().join(MATRIX);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Supported,
    Partly,
    NotSupported,
}

impl Status {
    fn parse(text: &str) -> Option<Status> {
        match text {
            "Supported" => Some(Status::Supported),
            "Partly" => Some(Status::Partly),
            "Not supported" => Some(Status::NotSupported),
            _ => None,
        }
    }

    /// Whether mesh claims to answer the row (Supported or Partly).
    fn served(self) -> bool {
        self != Status::NotSupported
    }
}

/// One row of an HTTP table.
#[derive(Debug, Clone)]
struct Row {
    line: usize,
    method: String,
    /// In Consul's form: `/v1/catalog/service/:service`.
    path: String,
    status: Status,
    /// In the mesh-only table (under a heading that says "mesh-only").
    mesh_only: bool,
}

impl Row {
    fn describe(&self) -> String {
        format!("{MATRIX}:{}: {} {}", self.line, self.method, self.path)
    }
}

/// The HTTP rows of the matrix: every table row whose second cell is a
/// path. A row with a path but a bad method or status is an error.
fn parse_matrix(text: &str) -> (Vec<Row>, Vec<String>) {
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut mesh_only = false;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.starts_with('#') {
            mesh_only = line.to_ascii_lowercase().contains("mesh-only");
            continue;
        }
        if !line.starts_with('|') {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() < 3 {
            continue;
        }
        let path = cells[1].trim_matches('`');
        if !path.starts_with('/') {
            continue;
        }
        let method = cells[0];
        if !METHODS.contains(&method) {
            errors.push(format!("{MATRIX}:{line_no}: unknown method {method:?}"));
            continue;
        }
        let Some(status) = Status::parse(cells[2]) else {
            errors.push(format!(
                "{MATRIX}:{line_no}: status {:?} is not Supported, Partly or Not supported",
                cells[2]
            ));
            continue;
        };
        rows.push(Row {
            line: line_no,
            method: method.to_string(),
            path: path.to_string(),
            status,
            mesh_only,
        });
    }
    (rows, errors)
}

/// A path with its parameters blanked, so that Consul's `:name` and axum's
/// `{name}` / `{*name}` compare equal whatever the parameter is called.
fn shape(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with(':') || (seg.starts_with('{') && seg.ends_with('}')) {
                ":"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// axum's `{name}` and `{*name}` written as Consul's `:name`.
fn consul_form(path: &str) -> String {
    path.split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => format!(":{}", name.trim_start_matches('*')),
                None => seg.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

/// A route mesh registers.
#[derive(Debug, Clone)]
struct Route {
    /// The source file, relative to the repository root.
    file: String,
    method: String,
    /// In Consul's form.
    path: String,
}

/// Every HTTP API route registered in `daemon/*/src`, with the problems
/// met reading them.
fn source_routes(root: &Path) -> (Vec<Route>, Vec<String>) {
    let daemon = root.join("daemon");
    let mut files = Vec::new();
    let crates = std::fs::read_dir(&daemon).unwrap_or_else(|e| panic!("{}: {e}", daemon.display()));
    for entry in crates.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if NOT_THE_AGENT_API.contains(&name.as_str()) {
            continue;
        }
        rust_files(&entry.path().join("src"), &mut files);
    }
    files.sort();
    let mut routes = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            errors.push(format!("{}: unreadable", file.display()));
            continue;
        };
        let rel = file
            .strip_prefix(root)
            .unwrap_or(file.as_path())
            .display()
            .to_string();
        routes_in(&text, &rel, &mut routes, &mut errors);
    }
    (routes, errors)
}

/// The `.rs` files under `dir`, leaving out unit-test files (`tests.rs`,
/// `tests/`).
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if name != "tests" {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") && name != "tests.rs" {
            out.push(path);
        }
    }
}

/// `text` without its inline unit-test module (`#[cfg(test)] mod x { … }`
/// and everything after it), where mock servers may register routes.
fn without_test_module(text: &str) -> &str {
    let mut from = 0;
    while let Some(at) = text[from..].find("#[cfg(test)]") {
        let start = from + at;
        let after = text[start + "#[cfg(test)]".len()..].trim_start();
        let first_line = after.lines().next().unwrap_or("");
        if first_line.starts_with("mod ") && first_line.contains('{') {
            return &text[..start];
        }
        from = start + 1;
    }
    text
}

/// The routes of one file's `.route("/v1/…", get(…).put(…))` calls.
fn routes_in(text: &str, file: &str, routes: &mut Vec<Route>, errors: &mut Vec<String>) {
    const CALL: &str = ".route(";
    let text = without_test_module(text);
    let mut rest = text;
    while let Some(at) = rest.find(CALL) {
        rest = &rest[at + CALL.len()..];
        let Some(args) = call_arguments(rest) else {
            errors.push(format!(
                "{file}: a .route( call without its closing parenthesis"
            ));
            break;
        };
        // Only literal paths: `.route(&base, …)` (the UI) and gossip's
        // `net.route(addr, …)` are not API routes.
        let Some(literal) = args.trim_start().strip_prefix('"') else {
            continue;
        };
        let Some(end) = literal.find('"') else {
            continue;
        };
        let path = &literal[..end];
        if !(path.starts_with("/v1/") || path.starts_with("/api/")) {
            continue;
        }
        let methods = methods_in(&literal[end + 1..]);
        if methods.is_empty() {
            errors.push(format!(
                "{file}: cannot tell the methods of route {path:?} (expected get(…), .put(…), axum::routing::post(…) …)"
            ));
            continue;
        }
        let path = consul_form(path);
        for method in methods {
            routes.push(Route {
                file: file.to_string(),
                method,
                path: path.clone(),
            });
        }
    }
}

/// The text of a call's arguments: `rest` starts just after its `(`; the
/// answer ends before the matching `)`. String literals are skipped.
fn call_arguments(rest: &str) -> Option<&str> {
    let bytes = rest.as_bytes();
    let mut depth = 1usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = skip_string(bytes, i),
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&rest[..i]);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The index of the `"` closing the string literal opened at `open`.
fn skip_string(bytes: &[u8], open: usize) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The HTTP methods a method router names: `get(h)`, `.put(h)`,
/// `axum::routing::delete(h)`; not a handler that happens to be called
/// `get` (`kv::get` is not followed by `(`).
fn methods_in(args: &str) -> Vec<String> {
    let bytes = args.as_bytes();
    let mut found: Vec<String> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'"' {
            i = skip_string(bytes, i) + 1;
            continue;
        }
        if !(c.is_ascii_alphabetic() || c == b'_') {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        let word = &args[start..i];
        if !matches!(word, "get" | "put" | "post" | "delete" | "patch" | "head") {
            continue;
        }
        let called = args[i..].trim_start().starts_with('(');
        let before = args[..start].trim_end();
        let router = match before.strip_suffix("::") {
            Some(path) => path.ends_with("routing"),
            None => true,
        };
        let method = word.to_ascii_uppercase();
        if called && router && !found.contains(&method) {
            found.push(method);
        }
    }
    found
}

#[test]
fn the_matrix_lists_every_route_mesh_serves_and_no_other() {
    let root = repo_root();
    let (rows, mut failures) = parse_matrix(&read_matrix());
    let (routes, route_errors) = source_routes(&root);
    failures.extend(route_errors);
    // Guards against a parser that quietly finds nothing.
    assert!(
        rows.len() > 150,
        "only {} HTTP rows read from {MATRIX}",
        rows.len()
    );
    assert!(
        routes.len() > 50,
        "only {} routes read from daemon/*/src",
        routes.len()
    );

    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    for row in &rows {
        if let Some(first) = seen.insert((row.method.clone(), shape(&row.path)), row.line) {
            failures.push(format!(
                "{}: the same route as line {first}",
                row.describe()
            ));
        }
    }
    for route in &routes {
        let row = rows
            .iter()
            .find(|r| r.method == route.method && shape(&r.path) == shape(&route.path));
        match row {
            None => failures.push(format!(
                "{}: mesh serves {} {}, but {MATRIX} has no row for it",
                route.file, route.method, route.path
            )),
            Some(r) if !r.status.served() => failures.push(format!(
                "{}: marked Not supported, but {} registers it",
                r.describe(),
                route.file
            )),
            Some(_) => {}
        }
    }
    for row in &rows {
        let registered = routes
            .iter()
            .any(|r| r.method == row.method && shape(&r.path) == shape(&row.path));
        if row.status.served() && !registered {
            failures.push(format!(
                "{}: marked {:?}, but mesh registers no such route",
                row.describe(),
                row.status
            ));
        }
        if row.mesh_only && !row.status.served() {
            failures.push(format!(
                "{}: a mesh-only row must be Supported or Partly",
                row.describe()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} problem(s) between {MATRIX} and the routes in daemon/*/src:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// What the agent answered, as far as telling a route miss goes.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    content_type: Option<String>,
    consul_index: bool,
    /// Read for a 404 only: other answers may stream (`/v1/agent/monitor`).
    body: String,
}

impl Answer {
    /// axum's answer for a path no route matches.
    fn is_route_miss(&self) -> bool {
        self.status == StatusCode::NOT_FOUND
            && self.content_type.is_none()
            && !self.consul_index
            && self.body.is_empty()
    }

    fn describe(&self) -> String {
        let mut body: String = self.body.chars().take(160).collect();
        if body.is_empty() {
            body = "(no body read)".into();
        }
        format!("{} {}", self.status, body.trim_end())
    }
}

/// `method target` against `agent`: a JSON `{}` body for writes (an empty
/// one for a snapshot restore, which then refuses it).
async fn ask(
    c: &reqwest::Client,
    agent: &mesh_testkit::TestAgent,
    method: &str,
    target: &str,
) -> Result<Answer, String> {
    let method = Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    let writes = matches!(
        method,
        Method::PUT | Method::POST | Method::DELETE | Method::PATCH
    );
    let mut req = c
        .request(method, agent.url(target))
        .timeout(Duration::from_secs(10));
    if writes && !target.starts_with("/v1/snapshot") {
        req = req.header("Content-Type", "application/json").body("{}");
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let consul_index = resp.headers().contains_key("x-consul-index");
    let body = if status == StatusCode::NOT_FOUND {
        resp.text().await.map_err(|e| e.to_string())?
    } else {
        String::new()
    };
    Ok(Answer {
        status,
        content_type,
        consul_index,
        body,
    })
}

/// A fresh UUID-shaped ID (no object has it).
fn random_id() -> String {
    static CALLS: AtomicU64 = AtomicU64::new(1);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = (nanos ^ CALLS.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (a, b) = (next(), next());
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

/// A plausible value for path parameter `param` of `path`.
fn param_value(path: &str, param: &str, node: &str) -> String {
    let p = param.to_ascii_lowercase();
    match p.as_str() {
        // Never force-leave the agent under test.
        "node" if path.starts_with("/v1/agent/force-leave/") => "compat-matrix-no-such-node".into(),
        "node" => node.to_string(),
        "state" => "passing".into(),
        "kind" => "service-defaults".into(),
        "key" => "compat-matrix/key".into(),
        // Connection refused at once.
        "address" => "127.0.0.1:1".into(),
        "type" => "default".into(),
        "dc" => "dc1".into(),
        "path" => "metrics".into(),
        _ if p.ends_with("id") => random_id(),
        _ => "web".into(),
    }
}

/// The request target for `row`: its parameters filled in, plus any
/// query string from `QUERIES`.
fn request_target(row: &Row, node: &str) -> String {
    let mut target = row
        .path
        .split('/')
        .map(|seg| match seg.strip_prefix(':') {
            Some(param) => param_value(&row.path, param, node),
            None => seg.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/");
    if let Some((_, _, query)) = QUERIES
        .iter()
        .find(|(m, p, _)| *m == row.method && *p == row.path)
    {
        target.push_str(query);
    }
    target
}

#[tokio::test]
async fn a_dev_agent_answers_every_matrix_row_as_marked() {
    let (rows, errors) = parse_matrix(&read_matrix());
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    let dir = tempfile::tempdir().unwrap();
    let agent = crate::dev_agent("compat-matrix", &dir.path().join("a")).await;
    let c = crate::http();
    let me = crate::fetch_json(&c, agent.url("/v1/agent/self")).await;
    let node = me["Config"]["NodeName"]
        .as_str()
        .expect("/v1/agent/self has Config.NodeName")
        .to_string();

    // The trait everything below relies on.
    let probe = ask(&c, &agent, "GET", "/v1/compat-matrix/no-such-route")
        .await
        .expect("the agent answers");
    assert!(
        probe.is_route_miss(),
        "an unknown route no longer gets a bare 404 (update Answer::is_route_miss): {probe:?}"
    );

    let mut failures = Vec::new();
    let mut asked = 0;
    for row in &rows {
        if NOT_ASKED.contains(&(row.method.as_str(), row.path.as_str())) {
            continue;
        }
        let target = request_target(row, &node);
        asked += 1;
        let answer = match ask(&c, &agent, &row.method, &target).await {
            Ok(a) => a,
            Err(e) => {
                failures.push(format!("{}: {} {target}: {e}", row.describe(), row.method));
                continue;
            }
        };
        let problem = if row.status.served() {
            if answer.is_route_miss() {
                Some("answered as an unknown route")
            } else if answer.status == StatusCode::METHOD_NOT_ALLOWED {
                Some("answered 405: the method is not routed")
            } else {
                None
            }
        } else if answer.is_route_miss() || answer.status == StatusCode::METHOD_NOT_ALLOWED {
            None
        } else {
            Some("marked Not supported, but the agent routes it")
        };
        if let Some(problem) = problem {
            failures.push(format!(
                "{}: {problem}: {} {target} -> {}",
                row.describe(),
                row.method,
                answer.describe()
            ));
        }
    }
    assert!(asked > 150, "only {asked} rows asked");
    assert!(
        failures.is_empty(),
        "{} row(s) of {MATRIX} not answered as marked:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
