//! mesh-client: a typed async client for the agent's Consul-compatible HTTP API.
//!
//! Used by the `mesh` CLI, the Terraform provider and `mesh sync`. Shapes are
//! Consul's, so the client also talks to Consul.
#![forbid(unsafe_code)]

mod acl;
mod catalog;
mod config;
mod connect;
mod error;
mod kv;
mod raw;
mod session;
mod types;

use std::time::Duration;

pub use reqwest::Method;
use reqwest::{RequestBuilder, Response, StatusCode, Url};
use serde::de::DeserializeOwned;

pub use error::Error;
pub use types::{
    Consistency, KvPair, Member, QueryMeta, QueryOptions, RaftConfiguration, RaftServer,
};

/// Result of a client call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Default agent HTTP address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8500";

/// A handle to one agent's HTTP API; cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
    owner: Option<String>,
    datacenter: Option<String>,
    /// `?stale` on every read that names no consistency mode itself.
    stale_reads: bool,
    /// `?takeover=true` on every write.
    takeover: bool,
}

impl Client {
    /// A client for `addr`: `host:port`, `http://host:port` or
    /// `https://host:port` (verified against the system's roots unless
    /// `with_ca_file` says otherwise).
    pub fn new(addr: &str) -> Result<Client> {
        let invalid = |reason: &str| Error::InvalidAddr {
            addr: addr.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = addr.trim();
        if trimmed.is_empty() {
            return Err(invalid("it is empty"));
        }
        let with_scheme = if trimmed.contains("://") {
            trimmed.to_string()
        } else {
            format!("http://{trimmed}")
        };
        let base = Url::parse(&with_scheme).map_err(|e| invalid(&e.to_string()))?;
        match base.scheme() {
            "http" | "https" => {}
            other => {
                return Err(invalid(&format!(
                    "unsupported scheme {other:?}; use http:// or https://"
                )))
            }
        }
        if base.host_str().is_none() {
            return Err(invalid("no host"));
        }
        let http = http_builder()
            .build()
            .map_err(|e| invalid(&error::root_cause(&e)))?;
        Ok(Client {
            http,
            base,
            token: None,
            owner: None,
            datacenter: None,
            stale_reads: false,
            takeover: false,
        })
    }

    /// Trust only the CA certificates in the PEM file `path` for an
    /// `https://` agent (Consul's `-ca-file` / `CONSUL_CACERT`).
    pub fn with_ca_file(self, path: &std::path::Path) -> Result<Client> {
        self.with_tls_files(Some(path), None)
    }

    /// TLS for an `https://` agent: trust only the CA in `ca_file`, and present `client_cert` (certificate and key
    /// PEM files; Consul's `-client-cert`/`-client-key`) to an agent that
    /// verifies its callers.
    pub fn with_tls_files(
        mut self,
        ca_file: Option<&std::path::Path>,
        client_cert: Option<(&std::path::Path, &std::path::Path)>,
    ) -> Result<Client> {
        use rustls::pki_types::pem::PemObject;
        let bad = |path: &std::path::Path, reason: String| Error::CaFile {
            path: path.display().to_string(),
            reason,
        };
        let read_certs = |path: &std::path::Path| {
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(path, e.to_string()))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| bad(path, format!("not PEM certificates: {e}")))?;
            match certs.is_empty() {
                true => Err(bad(path, "no CERTIFICATE block in it".into())),
                false => Ok(certs),
            }
        };
        // An agent that checks client certificates has a private CA.
        let Some(ca_path) = ca_file else {
            let (cert, _) = client_cert.expect("called with a CA file or a client certificate");
            return Err(bad(
                cert,
                "a client certificate needs the agents' CA too: set -ca-file or CONSUL_CACERT"
                    .into(),
            ));
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in read_certs(ca_path)? {
            roots.add(cert).map_err(|e| bad(ca_path, e.to_string()))?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(ca_path, e.to_string()))?
        .with_root_certificates(roots);
        let tls = match client_cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = read_certs(cert)?;
                let key_der = rustls::pki_types::PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| bad(key, format!("no PEM private key in it: {e}")))?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| bad(key, format!("does not go with {}: {e}", cert.display())))?
            }
        };
        self.http = http_builder()
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| bad(ca_path, error::root_cause(&e)))?;
        Ok(self)
    }

    /// A client configured like Consul's: `MESH_HTTP_ADDR`, else `CONSUL_HTTP_ADDR`, else
    /// 127.0.0.1:8500; token from `MESH_HTTP_TOKEN`, else `CONSUL_HTTP_TOKEN`.
    pub fn from_env() -> Result<Client> {
        let client = Client::new(&env_addr())?.with_token(env_token());
        let (ca, cert) = (env_ca_file(), env_client_cert());
        if ca.is_none() && cert.is_none() {
            return Ok(client);
        }
        client.with_tls_files(
            ca.as_deref(),
            cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
        )
    }

    /// Sends `X-Consul-Token` with every request (`None` or empty: no token).
    pub fn with_token(mut self, token: Option<String>) -> Client {
        self.token = token.filter(|t| !t.is_empty());
        self
    }

    /// Sends `X-Mesh-Owner` with every request, e.g. `terraform` (`None`: the agent's default, `api`).
    pub fn with_owner(mut self, owner: Option<String>) -> Client {
        self.owner = owner.filter(|o| !o.is_empty());
        self
    }

    /// Adds `?dc=` to every request (`None` or empty: the agent's datacenter).
    pub fn with_datacenter(mut self, dc: Option<String>) -> Client {
        self.datacenter = dc.filter(|d| !d.is_empty());
        self
    }

    /// Lets any server answer this client's reads (`-stale`), unless a
    /// read asks for a consistency mode itself.
    pub fn with_stale_reads(mut self, stale: bool) -> Client {
        self.stale_reads = stale;
        self
    }

    /// Asks every write to take its object over from another owner
    /// (`?takeover=true`), as Terraform's `takeover = true` does.
    pub fn with_takeover(mut self, takeover: bool) -> Client {
        self.takeover = takeover;
        self
    }

    /// The HTTP client underneath (its TLS roots included), for callers
    /// that poll the agent themselves, such as a sidecar's snapshot source.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The agent's base URL, e.g. `http://127.0.0.1:8500/`.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    // === status, operator, agent ===

    /// `GET /v1/status/leader`: the leader's server address, empty when there is none.
    pub async fn status_leader(&self) -> Result<String> {
        let url = self.url(&["status", "leader"]);
        self.json(self.send(Method::GET, url).await?).await
    }

    /// `GET /v1/status/peers`: server addresses of the Raft peers.
    pub async fn status_peers(&self) -> Result<Vec<String>> {
        let url = self.url(&["status", "peers"]);
        self.json(self.send(Method::GET, url).await?).await
    }

    /// `GET /v1/operator/raft/configuration`.
    pub async fn raft_configuration(&self) -> Result<RaftConfiguration> {
        let url = self.url(&["operator", "raft", "configuration"]);
        self.json(self.send(Method::GET, url).await?).await
    }

    /// `GET /v1/agent/members`: the LAN gossip members this agent sees.
    pub async fn members(&self) -> Result<Vec<Member>> {
        let url = self.url(&["agent", "members"]);
        self.json(self.send(Method::GET, url).await?).await
    }

    /// `PUT /v1/agent/leave`: the agent leaves the cluster gracefully and shuts down.
    pub async fn leave(&self) -> Result<()> {
        let url = self.url(&["agent", "leave"]);
        self.send(Method::PUT, url).await?;
        Ok(())
    }

    // === plumbing ===

    /// `base/v1/<segments...>`, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("http URLs have a path")
            .pop_if_empty()
            .push("v1")
            .extend(segments);
        if let Some(dc) = &self.datacenter {
            url.query_pairs_mut().append_pair("dc", dc);
        }
        url
    }

    fn request(&self, method: Method, mut url: Url) -> RequestBuilder {
        if self.stale_reads
            && method == Method::GET
            && !url
                .query_pairs()
                .any(|(k, _)| k == "stale" || k == "consistent")
        {
            url.query_pairs_mut().append_key_only("stale");
        }
        if self.takeover && method != Method::GET {
            url.query_pairs_mut().append_pair("takeover", "true");
        }
        let mut req = self.http.request(method, url);
        if let Some(owner) = &self.owner {
            req = req.header("X-Mesh-Owner", owner);
        }
        match &self.token {
            Some(token) => req.header("X-Consul-Token", token),
            None => req,
        }
    }

    /// Sends a body-less request and fails on non-2xx.
    async fn send(&self, method: Method, url: Url) -> Result<Response> {
        self.check(self.execute(self.request(method, url)).await?)
            .await
    }

    /// Sends a request, turning transport failures into errors that name the agent.
    async fn execute(&self, req: RequestBuilder) -> Result<Response> {
        req.send().await.map_err(|e| self.transport_error(&e))
    }

    fn transport_error(&self, e: &reqwest::Error) -> Error {
        let reason = error::root_cause(e);
        if e.is_connect() || (e.is_timeout() && e.url().is_some()) {
            Error::Connect {
                addr: self.display_addr(),
                reason,
            }
        } else {
            Error::Http {
                url: e
                    .url()
                    .map_or_else(|| self.base.to_string(), Url::to_string),
                reason,
            }
        }
    }

    fn display_addr(&self) -> String {
        let host = self.base.host_str().unwrap_or_default();
        match self.base.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        }
    }

    /// Passes 2xx responses through; anything else becomes `Error::Status` with the body.
    async fn check(&self, resp: Response) -> Result<Response> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let body = if body.trim().is_empty() {
            status.canonical_reason().unwrap_or_default().to_string()
        } else {
            body
        };
        Err(Error::Status {
            status: status.as_u16(),
            body,
        })
    }

    async fn json<T: DeserializeOwned>(&self, resp: Response) -> Result<T> {
        let url = resp.url().to_string();
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(&e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
            url,
            reason: e.to_string(),
        })
    }

    /// A read with query options; `404` is returned as `Ok(None)` with its headers.
    async fn read<T: DeserializeOwned>(
        &self,
        mut url: Url,
        opts: &QueryOptions,
    ) -> Result<(Option<T>, QueryMeta)> {
        apply_query_options(&mut url, opts);
        let resp = self.execute(self.request(Method::GET, url)).await?;
        let meta = query_meta(&resp);
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok((None, meta));
        }
        let resp = self.check(resp).await?;
        Ok((Some(self.json(resp).await?), meta))
    }
}

fn apply_query_options(url: &mut Url, opts: &QueryOptions) {
    let mut query = url.query_pairs_mut();
    match opts.consistency {
        Consistency::Default => {}
        Consistency::Stale => {
            query.append_key_only("stale");
        }
        Consistency::Consistent => {
            query.append_key_only("consistent");
        }
    }
    if let Some(index) = opts.index {
        query.append_pair("index", &index.to_string());
    }
    if let Some(wait) = opts.wait {
        query.append_pair("wait", &format!("{}ms", wait.as_millis()));
    }
    drop(query);
    if url.query() == Some("") {
        url.set_query(None);
    }
}

fn query_meta(resp: &Response) -> QueryMeta {
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    QueryMeta {
        index: header("X-Consul-Index")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        known_leader: header("X-Consul-KnownLeader").is_some_and(|v| v == "true"),
        last_contact_ms: header("X-Consul-LastContact")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    }
}

/// The agent address from the environment, as `from_env` uses it.
/// `CONSUL_HTTP_SSL=true` makes a scheme-less address `https://`, as in Consul.
pub fn env_addr() -> String {
    let addr = non_empty_var("MESH_HTTP_ADDR")
        .or_else(|| non_empty_var("CONSUL_HTTP_ADDR"))
        .unwrap_or_else(|| DEFAULT_ADDR.to_string());
    with_ssl_scheme(addr, env_ssl())
}

/// `MESH_HTTP_SSL` / `CONSUL_HTTP_SSL` read as Go's strconv.ParseBool.
fn env_ssl() -> bool {
    non_empty_var("MESH_HTTP_SSL")
        .or_else(|| non_empty_var("CONSUL_HTTP_SSL"))
        .is_some_and(|v| matches!(v.trim(), "1" | "t" | "T" | "true" | "TRUE" | "True"))
}

fn with_ssl_scheme(addr: String, ssl: bool) -> String {
    if ssl && !addr.contains("://") {
        format!("https://{addr}")
    } else {
        addr
    }
}

/// The reqwest settings every client shares.
fn http_builder() -> reqwest::ClientBuilder {
    // reqwest is built with rustls and no default crypto provider: use ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        // The agent is local or on the LAN: an HTTP(S)_PROXY meant for the internet must not apply.
        .no_proxy()
        .user_agent(concat!("mesh-client/", env!("CARGO_PKG_VERSION")))
}

/// The CA file from the environment: `MESH_CACERT`, else `CONSUL_CACERT`.
pub fn env_ca_file() -> Option<std::path::PathBuf> {
    non_empty_var("MESH_CACERT")
        .or_else(|| non_empty_var("CONSUL_CACERT"))
        .map(Into::into)
}

/// The client certificate and key from the environment:
/// `MESH_CLIENT_CERT`/`MESH_CLIENT_KEY`, else Consul's names.
pub fn env_client_cert() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let cert = non_empty_var("MESH_CLIENT_CERT").or_else(|| non_empty_var("CONSUL_CLIENT_CERT"))?;
    let key = non_empty_var("MESH_CLIENT_KEY").or_else(|| non_empty_var("CONSUL_CLIENT_KEY"))?;
    Some((cert.into(), key.into()))
}

/// The ACL token from the environment, as `from_env` uses it.
/// The token from the environment: `MESH_HTTP_TOKEN`, `CONSUL_HTTP_TOKEN`,
/// then the first line of the file `MESH_HTTP_TOKEN_FILE` or
/// `CONSUL_HTTP_TOKEN_FILE` names (as Consul reads it).
pub fn env_token() -> Option<String> {
    non_empty_var("MESH_HTTP_TOKEN")
        .or_else(|| non_empty_var("CONSUL_HTTP_TOKEN"))
        .or_else(|| {
            let path = non_empty_var("MESH_HTTP_TOKEN_FILE")
                .or_else(|| non_empty_var("CONSUL_HTTP_TOKEN_FILE"))?;
            token_from_file(std::path::Path::new(&path))
        })
}

fn token_from_file(path: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let token = text.lines().next()?.trim();
    (!token.is_empty()).then(|| token.to_string())
}

fn non_empty_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests;
