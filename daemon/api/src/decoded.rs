//! Bodies decoded once. A route whose target is inside its body decodes it
//! into one typed request; the ACL check reads that value and the handler
//! executes that same value. With ACLs on, the ACL middleware decodes and
//! hands the value on (the raw body is dropped, so nothing can read it a
//! second way); with ACLs off, the handler's extractor decodes with the same
//! function.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use mesh_acl::{Access, Resource};
use mesh_types::{Command, ConfigEntry, Intention, TxnOp};
use parking_lot::Mutex;
use serde_json::Value;

use crate::acl_routes::{config_check, txn_check, Check};
use crate::params::Params;
use crate::write::{owner, takeover};
use crate::{Api, ApiError};

/// Consul's default `txn_max_req_len`: the largest JSON request body (a
/// transaction, a registration, a config entry), refused with 413 before it
/// is buffered.
pub const MAX_JSON_BODY_BYTES: usize = 512 * 1024;

/// A request decoded from its head and JSON body.
pub trait BodyRequest: Sized + Send + Sync + 'static {
    /// What the body is, for error messages.
    const WHAT: &'static str;
    /// Decode (and validate) the request.
    fn decode(api: &Api, head: &Head, body: &Value) -> Result<Self, ApiError>;
    /// The permissions executing it needs.
    fn checks(&self, api: &Api) -> Vec<Check>;
}

/// What a decoder may read besides the body.
pub struct Head {
    pub headers: axum::http::HeaderMap,
    pub params: Params,
}

impl Head {
    fn owner(&self) -> String {
        owner(&self.headers)
    }
    fn takeover(&self) -> bool {
        takeover(&self.params.map())
    }
}

/// An oversized body up to this size is read and thrown away before the
/// 413, so a client that sends its whole body before reading the answer
/// (most do) gets the answer, not a reset connection; nothing is kept.
const DRAIN_MAX: usize = 8 << 20;
/// The longest an oversized body is drained for.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Read a body, keeping at most `limit` bytes: a declared length over it is
/// refused without keeping anything, a streamed body as soon as it passes
/// it. Either way the rest (up to `DRAIN_MAX`) is drained, not stored.
pub async fn read_limited(
    body: axum::body::Body,
    headers: &axum::http::HeaderMap,
    limit: usize,
    limit_name: &str,
) -> Result<axum::body::Bytes, ApiError> {
    use http_body_util::BodyExt;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body too large: over {limit} bytes ({limit_name})"),
        )
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = body;
    if let Some(n) = declared.filter(|n| *n > limit as u64) {
        if n <= DRAIN_MAX as u64 {
            drain(&mut body, 0).await;
        }
        return Err(too_large());
    }
    let mut kept = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("reading request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if kept.len() + data.len() > limit {
                drain(&mut body, kept.len() + data.len()).await;
                return Err(too_large());
            }
            kept.extend_from_slice(&data);
        }
    }
    Ok(kept.freeze())
}

/// Read and discard what is left of `body`, up to `DRAIN_MAX` bytes in all
/// (`seen` already read) and `DRAIN_TIME`.
async fn drain(body: &mut axum::body::Body, mut seen: usize) {
    use http_body_util::BodyExt;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while seen <= DRAIN_MAX {
            match body.frame().await {
                Some(Ok(frame)) => seen += frame.data_ref().map_or(0, |d| d.len()),
                _ => return,
            }
        }
    })
    .await;
}

/// Decode `T` from a request.
pub(crate) async fn decode_request<T: BodyRequest>(
    api: &Api,
    parts: &mut Parts,
    body: axum::body::Body,
) -> Result<T, ApiError> {
    let params = Params::from_request_parts(parts, &())
        .await
        .unwrap_or_default();
    let bytes = read_limited(
        body,
        &parts.headers,
        api.agent.body_limits().txn_max_req_len,
        "limits.txn_max_req_len",
    )
    .await?;
    let value = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        crate::wire::decode_json(&bytes, T::WHAT)?
    };
    let head = Head {
        headers: parts.headers.clone(),
        params,
    };
    T::decode(api, &head, &value)
}

/// A decoded request, passed from the ACL middleware to the handler.
struct Slot<T>(Arc<Mutex<Option<T>>>);

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Slot(self.0.clone())
    }
}

/// Put a decoded request where the handler's [`Decoded`] finds it.
pub(crate) fn hand_on<T: BodyRequest>(req: &mut Request, value: T) {
    req.extensions_mut()
        .insert(Slot(Arc::new(Mutex::new(Some(value)))));
}

/// Extractor: the request the ACL check saw, or (ACLs off) decoded here.
pub struct Decoded<T>(pub T);

impl<T: BodyRequest> FromRequest<Api> for Decoded<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, api: &Api) -> Result<Self, ApiError> {
        if let Some(slot) = req.extensions().get::<Slot<T>>() {
            if let Some(value) = slot.0.lock().take() {
                return Ok(Decoded(value));
            }
        }
        let (mut parts, body) = req.into_parts();
        decode_request(api, &mut parts, body).await.map(Decoded)
    }
}

fn write(resource: Resource, name: &str) -> Check {
    Check::Named(resource, name.to_string(), Access::Write)
}

/// Service write on a service and, for a proxy, on what it stands for
/// (a proxy gets its destination's certificate), as Consul asks.
fn service_checks(service: &mesh_types::Service) -> Vec<Check> {
    let mut checks = vec![write(Resource::Service, &service.name)];
    if let Some(p) = &service.proxy {
        if !p.destination_service_name.is_empty() {
            checks.push(write(Resource::Service, &p.destination_service_name));
        }
    }
    checks
}

// === /v1/txn ===

/// `PUT /v1/txn`: the operations, as they will be proposed.
pub struct TxnRequest(pub Vec<TxnOp>);

impl BodyRequest for TxnRequest {
    const WHAT: &'static str = "txn";
    fn decode(api: &Api, head: &Head, body: &Value) -> Result<Self, ApiError> {
        let ctx = crate::txn::Context {
            owner: head.owner(),
            takeover: head.takeover(),
            datacenter: api.agent.datacenter(),
        };
        crate::txn::decode_ops(body, &ctx).map(TxnRequest)
    }
    fn checks(&self, api: &Api) -> Vec<Check> {
        api.state
            .read(|s| self.0.iter().map(|op| txn_check(op, s)).collect())
    }
}

// === /v1/catalog/register and deregister ===

/// `PUT /v1/catalog/register`: the command it proposes.
pub struct CatalogRegister(pub Command);

impl BodyRequest for CatalogRegister {
    const WHAT: &'static str = "catalog register";
    fn decode(api: &Api, head: &Head, body: &Value) -> Result<Self, ApiError> {
        crate::catalog::register_command(api, &head.owner(), head.takeover(), body)
            .map(CatalogRegister)
    }
    fn checks(&self, api: &Api) -> Vec<Check> {
        let Command::Register {
            node,
            skip_node_update,
            service,
            checks: health,
            ..
        } = &self.0
        else {
            return vec![Check::Management];
        };
        let mut checks = service.iter().flat_map(service_checks).collect::<Vec<_>>();
        if !skip_node_update || service.is_none() {
            checks.push(write(Resource::Node, &node.name));
        }
        // A health check belongs to a service (write on it) or to the node.
        for hc in health {
            let own = service.as_ref().is_some_and(|s| s.id == hc.service_id);
            if hc.service_id.is_empty() {
                checks.push(write(Resource::Node, &node.name));
            } else if !own {
                let name = api.state.read(|s| {
                    s.service(&node.name, &hc.service_id)
                        .map(|s| s.name.clone())
                });
                checks.push(match name {
                    Some(name) => write(Resource::Service, &name),
                    None => write(Resource::Node, &node.name),
                });
            }
        }
        checks
    }
}

/// `PUT /v1/catalog/deregister`: the command it proposes.
pub struct CatalogDeregister(pub Command);

impl BodyRequest for CatalogDeregister {
    const WHAT: &'static str = "catalog deregister";
    fn decode(_: &Api, head: &Head, body: &Value) -> Result<Self, ApiError> {
        crate::catalog::deregister_command(&head.owner(), head.takeover(), body)
            .map(CatalogDeregister)
    }
    fn checks(&self, api: &Api) -> Vec<Check> {
        match &self.0 {
            Command::ServiceDeregister {
                node, service_id, ..
            } => {
                let name = api
                    .state
                    .read(|s| s.service(node, service_id).map(|s| s.name.clone()));
                match name {
                    Some(name) => vec![write(Resource::Service, &name)],
                    None => vec![write(Resource::Node, node)],
                }
            }
            Command::CheckDeregister { node, .. } | Command::NodeDeregister { node } => {
                vec![write(Resource::Node, node)]
            }
            _ => vec![Check::Management],
        }
    }
}

// === /v1/config ===

/// `PUT /v1/config`: a config entry, or a `service-intentions` entry stored
/// as the destination's intentions.
pub enum ConfigPut {
    Entry {
        entry: ConfigEntry,
        cas: Option<u64>,
        takeover: bool,
    },
    Intentions {
        destination: String,
        intentions: Vec<Intention>,
        owner: String,
        cas: Option<u64>,
        takeover: bool,
    },
}

impl BodyRequest for ConfigPut {
    const WHAT: &'static str = "config entry";
    fn decode(_: &Api, head: &Head, body: &Value) -> Result<Self, ApiError> {
        let folded = crate::wire::fold_keys(body.clone());
        let m = folded
            .as_object()
            .ok_or_else(|| ApiError::bad_request("config entry must be a JSON object"))?;
        let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or_default();
        let (kind, name) = (text("kind"), text("name"));
        if kind.is_empty() {
            return Err(ApiError::bad_request("config entry Kind is required"));
        }
        if name.is_empty() {
            return Err(ApiError::bad_request("config entry Name is required"));
        }
        crate::config_entries::check_kind(kind)?;
        let cas = head
            .params
            .map()
            .get("cas")
            .map(|c| {
                c.parse::<u64>()
                    .map_err(|_| ApiError::bad_request(format!("Invalid cas {c:?}")))
            })
            .transpose()?;
        let (owner, takeover) = (head.owner(), head.takeover());
        if kind == crate::config_entries::INTENTIONS {
            let (destination, intentions) =
                crate::intention_wire::parse_service_intentions(body, &owner)?;
            return Ok(ConfigPut::Intentions {
                destination,
                intentions,
                owner,
                cas,
                takeover,
            });
        }
        Ok(ConfigPut::Entry {
            entry: ConfigEntry {
                kind: kind.to_string(),
                name: name.to_string(),
                body_json: body.to_string(),
                owner,
                ..Default::default()
            },
            cas,
            takeover,
        })
    }
    fn checks(&self, _: &Api) -> Vec<Check> {
        let check = match self {
            ConfigPut::Entry { entry, .. } => config_check(&entry.kind, &entry.name, Access::Write),
            ConfigPut::Intentions { destination, .. } => {
                Some(write(Resource::Intention, destination))
            }
        };
        check.into_iter().collect()
    }
}

// === /v1/connect/intentions ===

/// `POST /v1/connect/intentions` (target in the body) and `PUT
/// /v1/connect/intentions/exact` (target in the query): the intention to store.
pub struct IntentionWrite {
    pub intention: Intention,
    pub takeover: bool,
}

impl BodyRequest for IntentionWrite {
    const WHAT: &'static str = "intention";
    fn decode(_: &Api, head: &Head, body: &Value) -> Result<Self, ApiError> {
        let body = match body {
            Value::Null => &Value::Object(Default::default()),
            other => other,
        };
        let map = head.params.map();
        let (source, destination) = if head.params.path.ends_with("/exact") {
            (
                Some(crate::intentions::required(&map, "source")?),
                Some(crate::intentions::required(&map, "destination")?),
            )
        } else {
            (None, None)
        };
        let intention =
            crate::intention_wire::parse_intention(body, source, destination, &head.owner())?;
        Ok(IntentionWrite {
            intention,
            takeover: head.takeover(),
        })
    }
    fn checks(&self, _: &Api) -> Vec<Check> {
        vec![write(Resource::Intention, &self.intention.destination)]
    }
}

// === /v1/agent/connect/authorize ===

/// `POST /v1/agent/connect/authorize`.
pub struct AuthorizeRequest {
    pub target: String,
    pub client_cert_uri: String,
}

impl BodyRequest for AuthorizeRequest {
    const WHAT: &'static str = "authorize";
    fn decode(_: &Api, _: &Head, body: &Value) -> Result<Self, ApiError> {
        let folded = crate::wire::fold_keys(body.clone());
        let text = |k: &str| {
            folded
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let target = text("target");
        if target.is_empty() {
            return Err(ApiError::bad_request("Target service must be specified"));
        }
        Ok(AuthorizeRequest {
            target,
            client_cert_uri: text("clientcerturi"),
        })
    }
    fn checks(&self, _: &Api) -> Vec<Check> {
        vec![write(Resource::Service, &self.target)]
    }
}

// === /v1/agent/token/<kind> ===

/// `PUT /v1/agent/token/<kind>`: the token to give the agent.
pub struct AgentToken {
    /// The secret; `None` clears the token of that kind.
    pub token: Option<String>,
}

impl BodyRequest for AgentToken {
    const WHAT: &'static str = "agent token";
    fn decode(_: &Api, _: &Head, body: &Value) -> Result<Self, ApiError> {
        parse_agent_token(body).map(|token| AgentToken { token })
    }
    fn checks(&self, api: &Api) -> Vec<Check> {
        let node = api.agent.node_name();
        vec![Check::Named(Resource::Agent, node, Access::Write)]
    }
}

/// How much of an unknown key an error shows.
const KEY_SHOWN_CHARS: usize = 64;

/// The body of `PUT /v1/agent/token/<kind>`: `{"Token": "<SecretID>"}`,
/// the key in any case (as every body is read) and no other key, so a typo
/// cannot clear a token; the value a SecretID (a UUID, as every mesh
/// secret is) or `""` to clear it. Errors never echo the value.
pub(crate) fn parse_agent_token(body: &Value) -> Result<Option<String>, ApiError> {
    const SHAPE: &str = "the body is {\"Token\": \"<SecretID>\"}, and \"\" clears the token";
    let fail = |what: String| {
        ApiError::bad_request(format!(
            "Request decode failed: agent token: {what}; {SHAPE}"
        ))
    };
    let Value::Object(map) = body else {
        return Err(fail("not a JSON object".into()));
    };
    if let Some(key) = map.keys().find(|k| !crate::wire::same_key(k, "Token")) {
        let shown: String = key.chars().take(KEY_SHOWN_CHARS).collect();
        return Err(fail(format!("unknown key {shown:?}")));
    }
    let token = match crate::wire::field(map, "Token") {
        Some(Value::String(token)) => token,
        Some(_) => return Err(fail("Token must be a string".into())),
        None => return Err(fail("Token is missing".into())),
    };
    if token.is_empty() {
        return Ok(None);
    }
    if uuid::Uuid::parse_str(token).is_err() {
        return Err(fail(format!(
            "Token must be a token's SecretID (a UUID), not {} bytes of something else",
            token.len()
        )));
    }
    Ok(Some(token.clone()))
}

// === /v1/agent/service/register and /v1/agent/check/register ===

/// `PUT /v1/agent/service/register`: the definition (keys folded), and
/// the names of the services it writes: the service, the service a proxy
/// stands for, and the sidecar it asks for.
pub struct ServiceRegistration {
    pub definition: Value,
    pub names: Vec<String>,
}

impl BodyRequest for ServiceRegistration {
    const WHAT: &'static str = "service definition";
    fn decode(_: &Api, head: &Head, body: &Value) -> Result<Self, ApiError> {
        let definition = crate::wire::fold_keys(body.clone());
        let def: crate::wire::ServiceDef =
            crate::wire::parse_value(definition.clone(), Self::WHAT)?;
        let service = def.to_service(&head.owner())?;
        let mut names = vec![service.name.clone()];
        if let Some(p) = &service.proxy {
            names.push(p.destination_service_name.clone());
        }
        if let Some(sc) = def
            .connect
            .as_ref()
            .and_then(|c| c.sidecar_service.as_ref())
        {
            names.push(crate::wire::sidecar_name(&service, sc));
        }
        names.retain(|n| !n.is_empty());
        names.dedup();
        Ok(ServiceRegistration { definition, names })
    }
    fn checks(&self, _: &Api) -> Vec<Check> {
        self.names
            .iter()
            .map(|n| write(Resource::Service, n))
            .collect()
    }
}

/// `PUT /v1/agent/check/register`: the definition (keys folded), read by
/// the same parser that registers it.
pub struct CheckRegistration {
    pub definition: Value,
    pub service_id: String,
}

impl BodyRequest for CheckRegistration {
    const WHAT: &'static str = "check definition";
    fn decode(_: &Api, _: &Head, body: &Value) -> Result<Self, ApiError> {
        let definition = crate::wire::fold_keys(body.clone());
        let parsed = mesh_checks::CheckDefinition::from_consul_json(&definition, "")
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(CheckRegistration {
            definition,
            service_id: parsed.service_id,
        })
    }
    fn checks(&self, api: &Api) -> Vec<Check> {
        match api.agent.local_service_name(&self.service_id) {
            Some(name) if !self.service_id.is_empty() => vec![write(Resource::Service, &name)],
            _ => vec![write(Resource::Node, &api.agent.node_name())],
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SECRET: &str = "6d3f6a39-2b1e-4c61-9a51-0e3cbb0f1c11";

    #[test]
    fn an_agent_token_body_takes_token_in_any_case_and_nothing_else() {
        for key in ["Token", "token", "TOKEN", "to_ken"] {
            let body = json!({ key: SECRET });
            assert_eq!(parse_agent_token(&body).unwrap().as_deref(), Some(SECRET));
        }
        assert_eq!(parse_agent_token(&json!({"Token": ""})).unwrap(), None);
        for (body, says) in [
            (json!({"Tokn": SECRET}), "unknown key \"Tokn\""),
            (json!({}), "Token is missing"),
            (json!({"Token": 7}), "Token must be a string"),
            (json!({"Token": "not-a-uuid"}), "a UUID"),
            (json!([SECRET]), "not a JSON object"),
            (Value::Null, "not a JSON object"),
        ] {
            let err = parse_agent_token(&body).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{body}");
            assert!(err.message.contains(says), "{body}: {}", err.message);
            assert!(!err.message.contains("not-a-uuid"), "{}", err.message);
        }
        let long = "k".repeat(10_000);
        let err = parse_agent_token(&json!({ long: SECRET })).unwrap_err();
        assert!(err.message.len() < 400, "{}", err.message);
    }
}
