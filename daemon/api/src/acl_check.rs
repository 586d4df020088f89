//! ACL enforcement for every route: the caller is resolved
//! (`acl_caller`), the request mapped to what it needs (`acl_routes`), and
//! list answers filtered to what the token may read (Consul's
//! `X-Consul-Results-Filtered-By-ACLs`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use mesh_acl::{Access, Authorizer, Resource};
use serde_json::Value;

use crate::acl_caller::{caller, request_secret, Caller, CACHE_MAX};
use crate::acl_routes::{allowed, check_text, needs, Check, Filter};
use crate::decoded::{
    decode_request, hand_on, AuthorizeRequest, BodyRequest, CatalogDeregister, CatalogRegister,
    CheckRegistration, ConfigPut, IntentionWrite, ServiceRegistration, TxnRequest,
};
use crate::{Api, ApiError};

fn denied(caller: &Caller, check: &Check) -> ApiError {
    let what = check_text(check);
    ApiError::new(
        StatusCode::FORBIDDEN,
        format!(
            "Permission denied: token with AccessorID '{}' lacks permission {what}",
            caller.accessor
        ),
    )
}

type Decoding = BoxFuture<'static, Result<(Vec<Check>, Request), ApiError>>;

/// Decode a `T` from the request, and rebuild the request with that value
/// in place of its body.
fn decode_as<T: BodyRequest>(api: &Api, mut parts: Parts, body: Body) -> Decoding {
    let api = api.clone();
    Box::pin(async move {
        let value: T = decode_request(&api, &mut parts, body).await?;
        let checks = value.checks(&api);
        let mut req = Request::from_parts(parts, Body::empty());
        hand_on(&mut req, value);
        Ok((checks, req))
    })
}

type BodyRoute = fn(&Api, Parts, Body) -> Decoding;

/// `/v1/query/<id>`: one query (not its `execute` or `explain`).
fn is_query_path(path: &str) -> bool {
    path.strip_prefix("/v1/query/")
        .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// The routes whose target is inside the body, and the request each decodes.
fn body_route(method: &axum::http::Method, path: &str) -> Option<BodyRoute> {
    use axum::http::Method;
    Some(match (method, path) {
        (&Method::PUT, "/v1/txn") => decode_as::<TxnRequest>,
        (&Method::PUT, "/v1/session/create") => decode_as::<crate::session::SessionCreate>,
        (&Method::PUT, "/v1/coordinate/update") => decode_as::<crate::coordinate::CoordinateWrite>,
        (&Method::POST, "/v1/query") => decode_as::<crate::prepared_query::QueryWrite>,
        (&Method::PUT, p) if is_query_path(p) => decode_as::<crate::prepared_query::QueryWrite>,
        (&Method::PUT, "/v1/catalog/register") => decode_as::<CatalogRegister>,
        (&Method::PUT, "/v1/catalog/deregister") => decode_as::<CatalogDeregister>,
        (&Method::PUT, "/v1/config") => decode_as::<ConfigPut>,
        (&Method::POST, "/v1/connect/intentions") => decode_as::<IntentionWrite>,
        (&Method::PUT, "/v1/connect/intentions/exact") => decode_as::<IntentionWrite>,
        (&Method::POST, "/v1/agent/connect/authorize") => decode_as::<AuthorizeRequest>,
        (&Method::PUT, "/v1/agent/service/register") => decode_as::<ServiceRegistration>,
        (&Method::PUT, "/v1/agent/check/register") => decode_as::<CheckRegistration>,
        (&Method::POST, "/v1/internal/mesh.d/view") => {
            decode_as::<crate::declared_view::ViewRequest>
        }
        _ => return None,
    })
}

/// The middleware: the guards every request passes (`blocking_limit`),
/// then resolve, check, run, filter. One layer for all of it, as each layer
/// costs every request.
pub(crate) async fn enforce(State(api): State<Api>, req: Request, next: Next) -> Response {
    let held = match crate::blocking_limit::admit(&api, &req) {
        Ok(held) => held,
        Err(refused) => return refused.into_response(),
    };
    let resp = match enforce_inner(api.clone(), req, next).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    };
    drop(held);
    resp
}

async fn enforce_inner(api: Api, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let settings = api.agent.acl();
    if !settings.enabled {
        req.extensions_mut().insert(Caller::anyone());
        return Ok(next.run(req).await);
    }
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let secret = request_secret(req.headers(), &query).or(settings.default_token.clone());
    let caller = caller(&api, &settings, secret).await?;
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let uri = req.uri().to_string();
    let mut needs = needs(&api, &method, &path, &query);
    // A body-borne target: decode the body once into the route's request,
    // check that value, and hand that value to the handler.
    if let Some(route) = body_route(&method, &path) {
        let (parts, body) = req.into_parts();
        let (checks, decoded) = route(&api, parts, body).await?;
        needs.checks = checks;
        req = decoded;
    }
    if let Some(missing) = needs.checks.iter().find(|c| !allowed(&caller.authz, c)) {
        tracing::debug!(accessor = %caller.accessor, %path, "ACL denied");
        return Err(denied(&caller, missing));
    }
    let authz = caller.authz.clone();
    let token = caller.secret.clone();
    req.extensions_mut().insert(caller);
    // A write this request makes carries its token if forwarded to the leader.
    let resp = mesh_raft::with_caller_token(token, next.run(req)).await;
    match needs.filter {
        Some(filter) if !authz.is_management() && resp.status() == StatusCode::OK => {
            let kv = path.starts_with("/v1/kv");
            filter_answer(&api, resp, filter, &authz, &uri, kv).await
        }
        _ => Ok(resp),
    }
}

async fn filter_answer(
    api: &Api,
    resp: Response,
    filter: Filter,
    authz: &Arc<Authorizer>,
    uri: &str,
    kv: bool,
) -> Result<Response, ApiError> {
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    // Most reads repeat: the same answer for the same caller filters the same.
    let key = (Arc::as_ptr(authz) as usize, uri.to_string());
    let hit = api
        .acl_cache
        .filtered
        .lock()
        .get(&key)
        .filter(|e| e.source == bytes)
        .map(|e| e.result.clone());
    let result = match hit {
        Some(r) => r,
        None => {
            let r = filter_bytes(&bytes, filter, authz, kv);
            let mut cache = api.acl_cache.filtered.lock();
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(
                key,
                FilteredAnswer {
                    // Held so the pointer in the key cannot be reused by another authorizer.
                    _authz: authz.clone(),
                    source: bytes.clone(),
                    result: r.clone(),
                },
            );
            r
        }
    };
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Ok(match result {
        // Consul answers 404 when nothing under the prefix is readable.
        Filtered::NothingReadable => (StatusCode::NOT_FOUND, parts.headers, "").into_response(),
        Filtered::Unchanged => Response::from_parts(parts, Body::from(bytes)),
        Filtered::Cut(out) => {
            parts.headers.insert(
                "X-Consul-Results-Filtered-By-ACLs",
                HeaderValue::from_static("true"),
            );
            Response::from_parts(parts, Body::from(out))
        }
    })
}

/// A list answer after the ACL filter.
#[derive(Clone)]
enum Filtered {
    Unchanged,
    Cut(Bytes),
    NothingReadable,
}

/// One filtered answer, kept while its source bytes stay the same.
pub(crate) struct FilteredAnswer {
    _authz: Arc<Authorizer>,
    source: Bytes,
    result: Filtered,
}

fn filter_bytes(bytes: &Bytes, filter: Filter, authz: &Authorizer, kv: bool) -> Filtered {
    let Ok(mut value) = serde_json::from_slice::<Value>(bytes) else {
        return Filtered::Unchanged;
    };
    let can_read = |r: Resource, name: &str| authz.allows(r, name, Access::Read);
    let check_ok = |c: &Value| {
        let service = c.get("ServiceName").and_then(Value::as_str).unwrap_or("");
        if service.is_empty() {
            can_read(
                Resource::Node,
                c.get("Node").and_then(Value::as_str).unwrap_or(""),
            )
        } else {
            can_read(Resource::Service, service)
        }
    };
    let named = |v: &Value, field: &str, r: Resource| {
        can_read(r, v.get(field).and_then(Value::as_str).unwrap_or(""))
    };
    let before = count(&value);
    match (&mut value, filter) {
        (Value::Array(items), Filter::Array(field, r)) => items.retain(|v| named(v, field, r)),
        (Value::Array(items), Filter::ArrayNested(outer, field, r)) => {
            items.retain(|v| v.get(outer).is_some_and(|o| named(o, field, r)))
        }
        (Value::Array(items), Filter::KeyNames) => {
            items.retain(|k| can_read(Resource::Key, k.as_str().unwrap_or("")))
        }
        (Value::Array(items), Filter::Checks) => items.retain(check_ok),
        (Value::Object(map), Filter::Checks) => map.retain(|_, c| check_ok(c)),
        (Value::Object(map), Filter::Keys(r)) => map.retain(|k, _| can_read(r, k)),
        (Value::Object(map), Filter::Values(field, r)) => map.retain(|_, v| named(v, field, r)),
        _ => {}
    }
    let after = count(&value);
    if kv && after == 0 && before > 0 {
        return Filtered::NothingReadable;
    }
    if after == before {
        return Filtered::Unchanged;
    }
    Filtered::Cut(Bytes::from(
        serde_json::to_vec(&value).expect("a JSON value renders"),
    ))
}

fn count(v: &Value) -> usize {
    match v {
        Value::Array(a) => a.len(),
        Value::Object(o) => o.len(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_named_by_a_nested_field_are_cut_to_what_the_token_reads() {
        let rules = mesh_acl::parse_rules("service \"api\" { policy = \"read\" }").unwrap();
        let authz = Authorizer::from_rules([&rules], false);
        let rows = serde_json::json!([
            {"Gateway": {"Name": "ing"}, "Service": {"Name": "api"}},
            {"Gateway": {"Name": "ing"}, "Service": {"Name": "db"}},
            {"Gateway": {"Name": "ing"}, "Service": "api"},
            {"Gateway": {"Name": "ing"}},
        ]);
        let bytes = Bytes::from(rows.to_string());
        let filter = Filter::ArrayNested("Service", "Name", Resource::Service);
        let Filtered::Cut(out) = filter_bytes(&bytes, filter, &authz, false) else {
            panic!("the rows the token may not read were kept");
        };
        let out: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            out,
            serde_json::json!([{"Gateway": {"Name": "ing"}, "Service": {"Name": "api"}}])
        );
        let all = Authorizer::from_rules(
            [&mesh_acl::parse_rules("service_prefix \"\" { policy = \"read\" }").unwrap()],
            false,
        );
        let kept = serde_json::json!([{"Service": {"Name": "api"}}, {"Service": {"Name": "db"}}]);
        assert!(matches!(
            filter_bytes(&Bytes::from(kept.to_string()), filter, &all, false),
            Filtered::Unchanged
        ));
    }
}
