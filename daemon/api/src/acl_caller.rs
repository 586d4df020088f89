//! Who is calling: the request's token resolved to an authorizer, on a
//! server from its state, on a client agent by asking a server, cached
//! until the ACL data changes (or 30 s on a client agent).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use mesh_acl::Authorizer;
use mesh_state::ResolvedToken;
use parking_lot::Mutex;
use serde_json::Value;

use crate::acl_check::FilteredAnswer;
use crate::{Api, ApiError};

/// The agent's ACL settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclSettings {
    /// Whether tokens are checked at all.
    pub enabled: bool,
    /// What no rule names is allowed (`default_policy = "allow"`).
    pub default_allow: bool,
    /// `acl.tokens.initial_management`: a management secret known from config.
    pub initial_management: Option<String>,
    /// `acl.tokens.default`: used for requests that carry no token.
    pub default_token: Option<String>,
    /// This agent's datacenter: where identities scoped to datacenters apply.
    pub datacenter: String,
}

/// Who is calling; handlers find it in the request's extensions.
#[derive(Clone)]
pub struct Caller {
    pub accessor: String,
    /// The secret the request carried, to relay to a server.
    pub secret: Option<String>,
    pub authz: Arc<Authorizer>,
    /// Unix milliseconds when the token expires (0: never): a cached
    /// caller is not used past it.
    pub expires_unix_ms: u64,
}

impl Caller {
    pub(crate) fn anyone() -> Caller {
        Caller {
            accessor: String::new(),
            secret: None,
            authz: Arc::new(Authorizer::management()),
            expires_unix_ms: 0,
        }
    }
}

/// A token resolved to its policies' rules (what client agents fetch).
pub(crate) type Resolved = ResolvedToken;

/// Resolved callers, keyed by secret; stamped with the ACL index (servers)
/// or the time fetched (client agents, which ask a server).
#[derive(Default)]
pub(crate) struct CallerCache {
    entries: Mutex<HashMap<String, (Stamp, bool, Caller)>>,
    /// Filtered list answers by (authorizer, request URI).
    pub(crate) filtered: Mutex<HashMap<(usize, String), FilteredAnswer>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stamp {
    Index(u64),
    At(Instant),
}

/// How long a client agent trusts a resolution from a server (Consul's token_ttl).
const CLIENT_TTL: Duration = Duration::from_secs(30);
pub(crate) const CACHE_MAX: usize = 4096;

/// The token a request carries: `X-Consul-Token`, `Authorization: Bearer`, or `?token=`.
pub fn request_secret(headers: &HeaderMap, params: &HashMap<String, String>) -> Option<String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    header("x-consul-token")
        .map(str::to_string)
        .or_else(|| {
            header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(|v| v.trim().to_string())
        })
        .or_else(|| params.get("token").cloned())
        .filter(|s| !s.is_empty())
}

pub(crate) fn acl_not_found() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "ACL not found")
}

/// On a server, from its state: the secret's token (the configured initial
/// management secret counts as management before the leader stores it).
pub fn resolve_in(
    state: &mesh_state::State,
    settings: &AclSettings,
    secret: Option<&str>,
) -> Option<ResolvedToken> {
    if secret.is_some() && settings.initial_management.as_deref() == secret {
        return Some(ResolvedToken {
            accessor: "initial-management".into(),
            management: true,
            rules: Vec::new(),
            expires_unix_ms: 0,
        });
    }
    state.acl_resolve(secret, &settings.datacenter)
}

/// On a server: the secret's token and its policies' rules.
pub(crate) async fn resolve_local(api: &Api, secret: Option<&str>) -> Result<Resolved, ApiError> {
    let settings = api.agent.acl();
    let lookup = |api: &Api| api.state.read(|s| resolve_in(s, &settings, secret));
    if let Some(found) = lookup(api) {
        return Ok(found);
    }
    // A token created through another server may not be applied here yet.
    if let Some(raft) = &api.raft {
        raft.read_barrier(mesh_raft::ReadMode::Default).await?;
    }
    lookup(api).ok_or_else(acl_not_found)
}

/// On a client agent: ask a server what the secret may do.
async fn resolve_remote(api: &Api, secret: Option<&str>) -> Result<Resolved, ApiError> {
    let server = api.agent.server_base_url().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "cannot check the ACL token: no known servers",
        )
    })?;
    let mut req = api.http.get(format!("{server}/v1/internal/acl/authorizer"));
    if let Some(secret) = secret {
        req = req.header("x-consul-token", secret);
    }
    let unavailable = |e: reqwest::Error| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot check the ACL token with server {server}: {e}"),
        )
    };
    let resp = req.send().await.map_err(unavailable)?;
    if resp.status() == reqwest::StatusCode::FORBIDDEN {
        return Err(acl_not_found());
    }
    let v: Value = resp
        .error_for_status()
        .map_err(unavailable)?
        .json()
        .await
        .map_err(unavailable)?;
    Ok(Resolved {
        accessor: v["AccessorID"].as_str().unwrap_or_default().to_string(),
        management: v["Management"].as_bool().unwrap_or(false),
        rules: v["Rules"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        expires_unix_ms: v["ExpiresUnixMs"].as_u64().unwrap_or(0),
    })
}

pub(crate) async fn caller(
    api: &Api,
    settings: &AclSettings,
    secret: Option<String>,
) -> Result<Caller, ApiError> {
    let key = secret.clone().unwrap_or_default();
    let stamp_now = match api.raft {
        Some(_) => Stamp::Index(api.state.read(|s| s.acl_index())),
        None => Stamp::At(Instant::now()),
    };
    if let Some((stamp, default_allow, c)) = api.acl_cache.entries.lock().get(&key) {
        let fresh = match (stamp, stamp_now) {
            (Stamp::Index(a), Stamp::Index(b)) => *a == b,
            (Stamp::At(t), Stamp::At(_)) => t.elapsed() < CLIENT_TTL,
            _ => false,
        };
        let expired = c.expires_unix_ms > 0 && c.expires_unix_ms <= mesh_state::now_unix_ms();
        if fresh && *default_allow == settings.default_allow && !expired {
            return Ok(c.clone());
        }
    }
    let resolved = match api.raft {
        Some(_) => resolve_local(api, secret.as_deref()).await?,
        None => resolve_remote(api, secret.as_deref()).await?,
    };
    let authz =
        Authorizer::from_rule_texts(resolved.management, &resolved.rules, settings.default_allow);
    let c = Caller {
        accessor: resolved.accessor,
        secret,
        authz: Arc::new(authz),
        expires_unix_ms: resolved.expires_unix_ms,
    };
    let mut entries = api.acl_cache.entries.lock();
    if entries.len() >= CACHE_MAX {
        entries.clear();
    }
    entries.insert(key, (stamp_now, settings.default_allow, c.clone()));
    Ok(c)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn token_comes_from_header_bearer_or_query() {
        let mut h = HeaderMap::new();
        let q = HashMap::from([("token".to_string(), "from-query".to_string())]);
        assert_eq!(request_secret(&h, &q).as_deref(), Some("from-query"));
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer from-bearer"),
        );
        assert_eq!(request_secret(&h, &q).as_deref(), Some("from-bearer"));
        h.insert("x-consul-token", HeaderValue::from_static("from-header"));
        assert_eq!(request_secret(&h, &q).as_deref(), Some("from-header"));
        assert_eq!(request_secret(&HeaderMap::new(), &HashMap::new()), None);
    }
}
