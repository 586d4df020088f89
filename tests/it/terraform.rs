//! Acceptance: the real terraform CLI (1.11) driving terraform-provider-mesh
//! against a real 3-server cluster. terraform must be on PATH: without it
//! these tests fail, naming it.
//! No network: the provider comes from a `dev_overrides` CLI config.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mesh_testkit::{eventually, TestCluster};
use serde_json::{json, Value};

use crate::http;

/// The terraform CLI on PATH. The tests that need it fail without it, as
/// they must not pass without running.
pub(crate) fn terraform() -> PathBuf {
    mesh_testkit::require_tool(
        "terraform",
        "put HashiCorp's terraform 1.11 on PATH (the machine image has it in /usr/local/bin)",
    )
}

/// The provider binary: `$MESH_PROVIDER_BIN`, else next to the `mesh` binary.
pub(crate) fn provider_bin() -> PathBuf {
    std::env::var_os("MESH_PROVIDER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| mesh_testkit::mesh_bin().with_file_name("terraform-provider-mesh"))
}

/// A terraform working directory with its own CLI config.
pub(crate) struct Tf {
    pub dir: PathBuf,
    pub(crate) cli_config: PathBuf,
}

pub(crate) struct Run {
    pub code: i32,
    pub out: String,
}

impl Tf {
    pub(crate) fn new(root: &Path, name: &str) -> Tf {
        let provider = provider_bin();
        assert!(
            provider.exists(),
            "{} not built (cargo build -p terraform-provider-mesh)",
            provider.display()
        );
        let plugins = root.join("plugins");
        if !plugins.exists() {
            std::fs::create_dir_all(&plugins).unwrap();
            std::os::unix::fs::symlink(&provider, plugins.join("terraform-provider-mesh")).unwrap();
        }
        let cli_config = root.join("cli.tfrc");
        std::fs::write(
            &cli_config,
            format!(
                "provider_installation {{\n  dev_overrides {{ \"mesh/mesh\" = \"{}\" }}\n  direct {{}}\n}}\n",
                plugins.display()
            ),
        )
        .unwrap();
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        Tf { dir, cli_config }
    }

    pub(crate) fn write(&self, addr: &str, body: &str) {
        self.write_with_token(addr, None, body)
    }

    /// `write`, with the provider's `token` set.
    pub(crate) fn write_with_token(&self, addr: &str, token: Option<&str>, body: &str) {
        let token = token.map_or(String::new(), |t| format!("  token   = \"{t}\"\n"));
        let header = format!(
            "terraform {{\n  required_providers {{\n    mesh = {{ source = \"mesh/mesh\" }}\n  }}\n}}\n\nprovider \"mesh\" {{\n  address = \"{addr}\"\n{token}}}\n\n"
        );
        std::fs::write(self.dir.join("main.tf"), header + body).unwrap();
    }

    /// `terraform <args>` in the working directory, with this CLI config.
    pub(crate) fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(terraform());
        cmd.args(args)
            .current_dir(&self.dir)
            .env("TF_CLI_CONFIG_FILE", &self.cli_config)
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env_remove("TF_LOG");
        cmd
    }

    pub(crate) async fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[]).await
    }

    /// `run` with more environment variables.
    pub(crate) async fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let out = self
            .command(args)
            .arg("-no-color")
            .envs(env.iter().copied())
            .output()
            .await
            .expect("terraform runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Run {
            code: out.status.code().unwrap_or(-1),
            out: text,
        }
    }

    pub(crate) async fn apply(&self) -> Run {
        self.run(&["apply", "-auto-approve", "-input=false"]).await
    }

    /// `plan -detailed-exitcode`: 0 no changes, 1 error, 2 changes.
    pub(crate) async fn plan(&self) -> Run {
        self.run(&["plan", "-detailed-exitcode", "-input=false"])
            .await
    }

    pub(crate) async fn must(&self, args: &[&str]) {
        let r = self.run(args).await;
        assert_eq!(r.code, 0, "terraform {args:?}:\n{}", r.out);
    }
}

fn config(port: u16, kv_value: &str, extra: &str) -> String {
    format!(
        r#"
resource "mesh_kv" "limit" {{
  path  = "app/limit"
  value = "{kv_value}"
}}

resource "mesh_service" "web" {{
  node    = "ext-1"
  address = "10.0.0.5"
  name    = "web"
  port    = {port}
  tags    = ["v1"]
  meta    = {{ team = "core" }}
  check {{
    check_id = "web-alive"
    name     = "web alive"
    status   = "passing"
  }}
  sidecar {{
    port = 21000
    upstream {{
      destination_name = "db"
      local_bind_port  = 9191
    }}
  }}
}}

resource "mesh_config_entry" "web" {{
  kind        = "service-defaults"
  name        = "web"
  config_json = jsonencode({{ Protocol = "http", MeshGateway = {{ Mode = "local" }} }})
}}

resource "mesh_ingress_gateway" "in" {{
  name = "ingress"
  listener {{
    port     = 8443
    protocol = "http"
    service {{
      name  = "web"
      hosts = ["web.example"]
    }}
  }}
}}

resource "mesh_terminating_gateway" "out" {{
  name = "egress"
  service {{
    name    = "billing"
    ca_file = "/etc/ssl/billing-ca.pem"
  }}
}}

resource "mesh_intention" "web_db" {{
  source      = "web"
  destination = "db"
  action      = "allow"
}}

resource "mesh_intention" "api_web" {{
  source      = "api"
  destination = "web"
  permission {{
    action = "allow"
    http {{
      path_prefix = "/v1"
      methods     = ["GET"]
    }}
  }}
}}

data "mesh_nodes" "all" {{}}
{extra}
"#
    )
}

pub(crate) async fn get(c: &reqwest::Client, url: String) -> Option<Value> {
    let r = c.get(&url).send().await.ok()?;
    if r.status() == 404 {
        return Some(Value::Null);
    }
    r.json().await.ok()
}

/// Whether an answer shows the object.
type Probe = fn(&Value) -> bool;

/// Every object the config declares, as each agent serves it.
async fn visible_everywhere(cluster: &TestCluster, present: bool) {
    let c = http();
    for a in cluster.agents.iter().filter(|a| a.is_alive()) {
        let checks: [(String, Probe); 5] = [
            (a.url("/v1/kv/app/limit"), |v| v.is_array()),
            (a.url("/v1/catalog/service/web"), |v| {
                v.as_array().is_some_and(|l| !l.is_empty())
            }),
            (a.url("/v1/config/service-defaults/web"), |v| {
                v["Protocol"] == "http"
            }),
            (a.url("/v1/config/ingress-gateway/ingress"), |v| {
                v["Listeners"][0]["Port"] == 8443
            }),
            (
                a.url("/v1/connect/intentions/exact?source=web&destination=db"),
                |v| v["Action"] == "allow",
            ),
        ];
        for (url, ok) in checks {
            eventually(
                &format!("{url} present={present}"),
                Duration::from_secs(10),
                || {
                    let (c, url) = (c.clone(), url.clone());
                    async move {
                        let v = get(&c, url).await?;
                        (ok(&v) == present).then_some(())
                    }
                },
            )
            .await;
        }
    }
}

#[tokio::test]
async fn terraform_manages_mesh_end_to_end() {
    terraform();
    let mut cluster = TestCluster::start(3).await.expect("cluster");
    let root = tempfile::tempdir().unwrap();
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    // Talk to a follower, so killing the leader later leaves the address up.
    let via = (leader + 1) % 3;
    let addr = cluster.agents[via].http.to_string();
    let tf = Tf::new(root.path(), "main");

    // Create: everything visible on every node; a second plan is empty.
    tf.write(&addr, &config(8080, "10", ""));
    let r = tf.apply().await;
    assert_eq!(r.code, 0, "{}", r.out);
    assert!(r.out.contains("7 added"), "{}", r.out);
    visible_everywhere(&cluster, true).await;
    let r = tf.plan().await;
    assert_eq!(r.code, 0, "no changes expected:\n{}", r.out);

    // A field changed in config: an in-place update, then no changes.
    tf.write(&addr, &config(8081, "20", ""));
    let r = tf.plan().await;
    assert_eq!(r.code, 2, "{}", r.out);
    assert!(
        r.out.contains("mesh_service.web will be updated in-place"),
        "{}",
        r.out
    );
    assert!(r.out.contains("2 to change, 0 to destroy"), "{}", r.out);
    let r = tf.apply().await;
    assert_eq!(r.code, 0, "{}", r.out);
    let c = http();
    let svc = get(&c, cluster.agents[leader].url("/v1/catalog/service/web"))
        .await
        .unwrap();
    assert_eq!(svc[0]["ServicePort"], 8081);
    assert_eq!(tf.plan().await.code, 0);

    // Drift made through the HTTP API shows in the plan, and apply corrects it.
    let r = c
        .put(cluster.agents[leader].url("/v1/config"))
        .header("X-Mesh-Owner", "terraform")
        .json(&json!({"Kind": "service-defaults", "Name": "web", "Protocol": "grpc"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let r = tf.plan().await;
    assert_eq!(r.code, 2, "drift expected:\n{}", r.out);
    assert!(
        r.out
            .contains("mesh_config_entry.web will be updated in-place"),
        "{}",
        r.out
    );
    assert_eq!(tf.apply().await.code, 0);
    assert_eq!(tf.plan().await.code, 0);

    // Import every resource type into a fresh state: then nothing to change.
    let imported = Tf::new(root.path(), "imported");
    imported.write(&addr, &config(8081, "20", ""));
    for (address, id) in [
        ("mesh_kv.limit", "app/limit"),
        ("mesh_service.web", "ext-1/web"),
        ("mesh_config_entry.web", "service-defaults/web"),
        ("mesh_ingress_gateway.in", "ingress"),
        ("mesh_terminating_gateway.out", "egress"),
        ("mesh_intention.web_db", "web/db"),
        ("mesh_intention.api_web", "api/web"),
    ] {
        imported
            .must(&["import", "-input=false", address, id])
            .await;
    }
    let r = imported.plan().await;
    assert_eq!(r.code, 0, "imported state should match:\n{}", r.out);

    // An object another owner declared: a diagnostic naming that owner.
    let owner = "file:node1:/etc/mesh.d/billing.hcl";
    let r = c
        .put(cluster.agents[leader].url("/v1/catalog/register"))
        .header("X-Mesh-Owner", owner)
        .json(&json!({"Node": "ext-2", "Address": "10.0.0.6", "Service": {"Service": "billing", "Port": 9000}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let clash = r#"
resource "mesh_service" "billing" {
  node    = "ext-2"
  address = "10.0.0.6"
  name    = "billing"
  port    = 9001
}
"#;
    tf.write(&addr, &config(8081, "20", clash));
    let r = tf.apply().await;
    assert_eq!(r.code, 1, "{}", r.out);
    assert!(r.out.contains(owner), "the owner is named:\n{}", r.out);
    tf.write(&addr, &config(8081, "20", ""));

    // The leader dies mid-apply: the apply succeeds or fails cleanly, and a
    // re-apply converges.
    let many: String = (0..120)
        .map(|i| {
            format!(
                "resource \"mesh_kv\" \"k{i}\" {{\n  path  = \"bulk/{i}\"\n  value = \"{i}\"\n}}\n"
            )
        })
        .collect();
    tf.write(&addr, &config(8081, "20", &many));
    let apply = tokio::spawn({
        let tf = Tf {
            dir: tf.dir.clone(),
            cli_config: tf.cli_config.clone(),
        };
        async move { tf.apply().await }
    });
    // Kill the leader once the apply is provably under way: some of its
    // keys exist, and terraform has not finished.
    let c2 = c.clone();
    let leader_url = cluster.agents[leader].url("/v1/kv/bulk/?keys");
    eventually("the apply is writing", Duration::from_secs(60), || async {
        let keys: Vec<String> = c2.get(&leader_url).send().await.ok()?.json().await.ok()?;
        (!keys.is_empty()).then_some(())
    })
    .await;
    assert!(
        !apply.is_finished(),
        "the apply finished before the leader was killed"
    );
    cluster.agents[leader].kill().await;
    let r = apply.await.unwrap();
    // Either outcome is honest (a write may have been cut off, or retried
    // on the new leader); what matters is the state after a re-apply.
    assert!(r.code == 0 || r.code == 1, "{}", r.out);
    assert!(!r.out.contains("panic"), "{}", r.out);
    cluster
        .wait_for_new_leader(leader, Duration::from_secs(30))
        .await;
    let r = tf.apply().await;
    assert_eq!(r.code, 0, "re-apply converges:\n{}", r.out);
    assert_eq!(tf.plan().await.code, 0);
    let survivor = cluster.agents[(leader + 1) % 3].url("/v1/kv/bulk/?recurse");
    let entries: Vec<Value> = c.get(&survivor).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        entries.len(),
        120,
        "every resource's key exists after the re-apply"
    );

    // The CA: configured in place; a key change waits for the staged
    // rotation to activate the new root, which every live node then serves.
    let roots_before = get(&c, cluster.agents[via].url("/v1/connect/ca/roots"))
        .await
        .unwrap();
    let ca = |bits: u32| {
        format!(
            "resource \"mesh_ca_config\" \"ca\" {{\n  leaf_cert_ttl    = \"48h\"\n  private_key_type = \"ec\"\n  private_key_bits = {bits}\n}}\n\ndata \"mesh_ca_roots\" \"now\" {{\n  depends_on = [mesh_ca_config.ca]\n}}\n"
        )
    };
    tf.write(&addr, &config(8081, "20", &ca(256)));
    let r = tf.apply().await;
    assert_eq!(r.code, 0, "{}", r.out);
    assert_eq!(tf.plan().await.code, 0);
    tf.write(&addr, &config(8081, "20", &ca(384)));
    let r = tf.plan().await;
    assert!(
        r.out.contains("mesh_ca_config.ca will be updated in-place"),
        "{}",
        r.out
    );
    let r = tf.apply().await;
    assert_eq!(r.code, 0, "{}", r.out);
    let active = get(&c, cluster.agents[via].url("/v1/connect/ca/roots"))
        .await
        .unwrap()["ActiveRootID"]
        .clone();
    assert_ne!(active, roots_before["ActiveRootID"], "a new root is active");
    for a in cluster.agents.iter().filter(|a| a.is_alive()) {
        let cfg = get(&c, a.url("/v1/connect/ca/configuration"))
            .await
            .unwrap();
        assert_eq!(cfg["Config"]["LeafCertTTL"], "48h", "{cfg}");
    }
    assert_eq!(tf.plan().await.code, 0);
    tf.write(&addr, &config(8081, "20", ""));

    // Destroy: all gone on every live node.
    let r = tf.run(&["destroy", "-auto-approve", "-input=false"]).await;
    assert_eq!(r.code, 0, "{}", r.out);
    visible_everywhere(&cluster, false).await;
    let bulk = get(&c, cluster.agents[via].url("/v1/kv/bulk/?recurse"))
        .await
        .unwrap();
    assert!(bulk.is_null(), "{bulk}");
}

/// The data plane obeys what Terraform declares: intentions applied with
/// terraform cut and restore live traffic through two built-in proxies on
/// different servers, and a CA rotation applied through `mesh_ca_config`
/// runs under continuous traffic without one failed connection.
#[tokio::test]
async fn terraform_intentions_and_ca_rotation_govern_live_proxy_traffic() {
    terraform();
    use crate::proxy::{
        connect_proxy, echo_server, expect_cut, free_port, live_stream, roundtrip, Traffic,
    };

    let cluster = TestCluster::start(3).await.expect("cluster");
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let root = tempfile::tempdir().unwrap();
    let c = http();
    let db_app = echo_server().await;
    let db_public = free_port();
    let tf = Tf::new(root.path(), "traffic");
    let addr = cluster.agents[2].http.to_string();
    let declare = |action: &str, ca_bits: u32| {
        format!(
            r#"
resource "mesh_service" "db" {{
  node    = "db-host"
  address = "127.0.0.1"
  name    = "db"
  port    = {app}
  sidecar {{
    port = {db_public}
  }}
}}

resource "mesh_intention" "web_db" {{
  source      = "web"
  destination = "db"
  action      = "{action}"
}}

resource "mesh_ca_config" "ca" {{
  private_key_type        = "ec"
  private_key_bits        = {ca_bits}
  rotation_pending_period = "1s"
  rotation_spread_window  = "2s"
}}
"#,
            app = db_app.port()
        )
    };
    tf.write(&addr, &declare("allow", 256));
    let r = tf.apply().await;
    assert_eq!(r.code, 0, "{}", r.out);

    // db's proxy on server 0 listens where the catalog says; web's on server 1.
    let db_proxy = connect_proxy(
        &cluster.agents[0],
        &[
            "-service",
            "db",
            "-listen",
            &format!("127.0.0.1:{db_public}"),
            "-service-addr",
            &db_app.to_string(),
        ],
    )
    .await;
    let upstream_port = free_port();
    let _web_proxy = connect_proxy(
        &cluster.agents[1],
        &[
            "-service",
            "web",
            "-listen",
            &format!("127.0.0.1:{}", free_port()),
            "-service-addr",
            "127.0.0.1:1",
            "-upstream",
            &format!("db:{upstream_port}"),
        ],
    )
    .await;
    let upstream: std::net::SocketAddr = format!("127.0.0.1:{upstream_port}").parse().unwrap();
    eventually("traffic flows", Duration::from_secs(20), || async {
        roundtrip(upstream, b"hello").await.ok()
    })
    .await;

    // terraform flips the intention to deny: the live stream is cut and new
    // connections are refused.
    let mut live = live_stream(upstream).await;
    tf.write(&addr, &declare("deny", 256));
    let r = tf.apply().await;
    assert_eq!(r.code, 0, "{}", r.out);
    assert!(r.out.contains("1 changed"), "{}", r.out);
    expect_cut(&mut live, "after terraform's deny").await;
    crate::proxy::expect_denied(upstream, &db_proxy).await;

    // Back to allow.
    tf.write(&addr, &declare("allow", 256));
    assert_eq!(tf.apply().await.code, 0);
    eventually("allowed again", Duration::from_secs(10), || async {
        roundtrip(upstream, b"again").await.ok()
    })
    .await;

    // A root rotation through terraform under continuous traffic.
    let before = get(&c, cluster.agents[0].url("/v1/connect/ca/roots"))
        .await
        .unwrap()["ActiveRootID"]
        .clone();
    let traffic = Traffic::start(upstream);
    tf.write(&addr, &declare("allow", 384));
    let r = tf.apply().await;
    assert_eq!(r.code, 0, "{}", r.out);
    assert!(
        r.out.contains("mesh_ca_config.ca: Modifications complete"),
        "{}",
        r.out
    );
    let after = get(&c, cluster.agents[0].url("/v1/connect/ca/roots"))
        .await
        .unwrap()["ActiveRootID"]
        .clone();
    assert_ne!(
        after, before,
        "terraform's apply returned with a new active root"
    );
    // Both proxies hold leaves from the new root before the traffic stops.
    eventually("leaves re-issued", Duration::from_secs(20), || async {
        let v = get(&c, cluster.agents[0].url("/v1/connect/ca/rotation")).await?;
        (v["Total"].as_u64()? > 0 && v["Reissued"] == v["Total"]).then_some(())
    })
    .await;
    eventually("traffic after re-issue", Duration::from_secs(5), || async {
        roundtrip(upstream, b"after").await.ok()
    })
    .await;
    traffic.expect_no_failures("the rotation").await;
    let r = tf.plan().await;
    assert_eq!(r.code, 0, "no changes after the rotation:\n{}", r.out);

    // Destroy: the intention is gone, so the default (allow) still carries traffic,
    // and the service leaves the catalog.
    let r = tf.run(&["destroy", "-auto-approve", "-input=false"]).await;
    assert_eq!(r.code, 0, "{}", r.out);
    let i = get(
        &c,
        cluster.agents[1].url("/v1/connect/intentions/exact?source=web&destination=db"),
    )
    .await
    .unwrap();
    assert!(i.is_null(), "{i}");
}

#[tokio::test]
async fn terraform_reports_bad_input_on_the_attribute() {
    terraform();
    let root = tempfile::tempdir().unwrap();
    // Nothing listens here: only configuration errors and the unreachable agent are seen.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let cases = [
        (
            "action",
            r#"resource "mesh_intention" "x" {
  source      = "a"
  destination = "b"
  action      = "maybe"
}"#,
            vec![
                "Invalid value for action",
                r#"action      = "maybe""#,
                "`allow`",
            ],
        ),
        (
            "kind",
            r#"resource "mesh_config_entry" "x" {
  kind        = "service-nonsense"
  name        = "web"
  config_json = "{}"
}"#,
            vec![
                "Invalid value for kind",
                r#"kind        = "service-nonsense""#,
            ],
        ),
        (
            "pem",
            r#"resource "mesh_ca_config" "x" {
  root_cert = "-----BEGIN CERTIFICATE-----\n%%%not base64%%%\n-----END CERTIFICATE-----\n"
}"#,
            vec!["Malformed root_cert", "root_cert = "],
        ),
        (
            "unreachable",
            r#"resource "mesh_kv" "x" {
  path  = "a"
  value = "b"
}"#,
            vec![
                "Cannot reach the mesh agent",
                "address = ",
                // ca_file set: a warning that it does not verify anything.
                "ca_file is not used",
            ],
        ),
    ];
    for (name, body, wants) in cases {
        let tf = Tf::new(root.path(), name);
        tf.write(&addr, body);
        if name == "unreachable" {
            let main = tf.dir.join("main.tf");
            let text = std::fs::read_to_string(&main).unwrap().replace(
                "  address = ",
                "  ca_file = \"/etc/ssl/mesh-ca.pem\"\n  address = ",
            );
            std::fs::write(&main, text).unwrap();
        }
        let r = tf.plan().await;
        assert_eq!(r.code, 1, "{name}: plan fails:\n{}", r.out);
        assert!(
            !r.out.contains("panic") && !r.out.contains("crash"),
            "{name}:\n{}",
            r.out
        );
        for want in wants {
            assert!(
                r.out.contains(want),
                "{name}: expected {want:?} in:\n{}",
                r.out
            );
        }
    }
}

fn chain_config(v1: u32, v2: u32) -> String {
    format!(
        r#"resource "mesh_config_entry" "shop_defaults" {{
  kind        = "service-defaults"
  name        = "shop"
  config_json = jsonencode({{ Protocol = "http" }})
}}

resource "mesh_config_entry" "shop_resolver" {{
  kind = "service-resolver"
  name = "shop"
  config_json = jsonencode({{
    DefaultSubset = "v1"
    Subsets = {{
      v1 = {{ Filter = "Service.Meta.version == v1" }}
      v2 = {{ Filter = "Service.Meta.version == v2" }}
    }}
  }})
  depends_on = [mesh_config_entry.shop_defaults]
}}

resource "mesh_config_entry" "shop_splitter" {{
  kind = "service-splitter"
  name = "shop"
  config_json = jsonencode({{
    Splits = [
      {{ Weight = {v1}, ServiceSubset = "v1" }},
      {{ Weight = {v2}, ServiceSubset = "v2" }},
    ]
  }})
  depends_on = [mesh_config_entry.shop_resolver]
}}

resource "mesh_config_entry" "shop_router" {{
  kind = "service-router"
  name = "shop"
  config_json = jsonencode({{
    Routes = [{{
      Match       = {{ HTTP = {{ PathPrefix = "/beta" }} }}
      Destination = {{ ServiceSubset = "v2", NumRetries = 2, RetryOnStatusCodes = [503] }}
    }}]
  }})
  depends_on = [mesh_config_entry.shop_splitter]
}}

resource "mesh_ingress_gateway" "edge" {{
  name = "edge"
  listener {{
    port     = 8443
    protocol = "http"
    tls      = true
    service {{
      name  = "shop"
      hosts = ["shop.example.test"]
    }}
  }}
  depends_on = [mesh_config_entry.shop_defaults]
}}
"#
    )
}

#[tokio::test]
async fn terraform_declares_chains_and_gateways_and_a_bad_chain_changes_nothing() {
    terraform();
    let cluster = TestCluster::start(3).await.expect("cluster");
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let addr = cluster.agents[(leader + 1) % 3].http.to_string();
    let root = tempfile::tempdir().unwrap();
    let tf = Tf::new(root.path(), "chains");
    tf.write(&addr, &chain_config(90, 10));
    let r = tf.apply().await;
    assert_eq!(r.code, 0, "{}", r.out);
    let r = tf.plan().await;
    assert_eq!(r.code, 0, "no changes expected:\n{}", r.out);

    // The compiled chain, on every server.
    let c = http();
    for agent in &cluster.agents {
        let chain = eventually(
            "the chain on every server",
            Duration::from_secs(10),
            || async {
                let v = get(&c, agent.url("/v1/discovery-chain/shop")).await?;
                (v["Chain"]["StartNode"] == "router:shop.default.default").then_some(v)
            },
        )
        .await;
        let splits = &chain["Chain"]["Nodes"]["splitter:shop.default.default"]["Splits"];
        assert_eq!(splits[0]["Weight"], 90.0, "{chain}");
        assert_eq!(
            splits[1]["NextNode"],
            "resolver:v2.shop.default.default.dc1"
        );
    }
    let gateway = get(
        &c,
        cluster.agents[leader].url("/v1/config/ingress-gateway/edge"),
    )
    .await
    .unwrap();
    assert_eq!(gateway["Listeners"][0]["TLS"]["Enabled"], true, "{gateway}");

    // Weights that sum to 99: the apply fails naming the field; nothing changes.
    tf.write(&addr, &chain_config(50, 49));
    let r = tf.apply().await;
    assert_ne!(r.code, 0, "{}", r.out);
    assert!(
        r.out.contains("Splits: the weights sum to 99, not 100"),
        "{}",
        r.out
    );
    let splitter = get(
        &c,
        cluster.agents[leader].url("/v1/config/service-splitter/shop"),
    )
    .await
    .unwrap();
    assert_eq!(splitter["Splits"][0]["Weight"], 90, "{splitter}");
    // Fixed: applies, and the plan is clean again.
    tf.write(&addr, &chain_config(50, 50));
    let r = tf.apply().await;
    assert_eq!(r.code, 0, "{}", r.out);
    assert_eq!(tf.plan().await.code, 0);
}
