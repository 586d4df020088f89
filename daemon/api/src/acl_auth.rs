//! Auth methods (`jwt`), binding rules, `/v1/acl/login` and `/logout`:
//! a signed JWT from an identity provider is traded for a token whose
//! roles, policies and identities the binding rules derive from its claims.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use mesh_state::State as Catalog;
use mesh_types::{
    AclAuthMethod, AclBindingRule, AclNodeIdentity, AclServiceIdentity, AclTemplatedPolicy,
    AclToken, AclTokenLinks, Command,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::acl::enabled;
use crate::acl_links::{shown, written_then_shown};
use crate::error::json_body;
use crate::{Api, ApiError};

/// The longest bearer token `/v1/acl/login` reads.
pub const MAX_BEARER_TOKEN_BYTES: usize = 16 * 1024;
/// Keys in one method's `JWTValidationPubKeys`.
pub const MAX_JWT_KEYS: usize = 16;
/// Claim mappings in one method (each of `ClaimMappings`, `ListClaimMappings`).
pub const MAX_CLAIM_MAPPINGS: usize = 64;
/// Values one list claim may bring into a selector.
pub const MAX_LIST_CLAIM_VALUES: usize = 256;
/// Longest `MaxTokenTTL`.
pub const MAX_LOGIN_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

fn not_found(what: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("{what} not found"))
}

fn bad(what: impl Into<String>) -> ApiError {
    ApiError::bad_request(what)
}

fn object(body: &[u8], what: &str) -> Result<Value, ApiError> {
    let v = json_body(body, what)?;
    if !v.is_object() {
        return Err(bad(format!("Request decode failed: {what}: a JSON object")));
    }
    Ok(v)
}

// === JWT configuration ===

/// A `jwt` method's `Config`, checked when the method is written.
#[derive(Clone, Default)]
pub(crate) struct JwtConfig {
    keys: Vec<DecodingKey>,
    algorithms: Vec<Algorithm>,
    bound_issuer: String,
    bound_audiences: Vec<String>,
    claim_mappings: BTreeMap<String, String>,
    list_claim_mappings: BTreeMap<String, String>,
    leeway_secs: u64,
}

fn strings(v: Option<&Value>, what: &str) -> Result<Vec<String>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad(format!("Config.{what}: a list of strings")))
            })
            .collect(),
        Some(_) => Err(bad(format!("Config.{what}: a list of strings"))),
    }
}

fn string_map(v: Option<&Value>, what: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let map = match v {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(bad(format!("Config.{what}: an object of strings"))),
    };
    if map.len() > MAX_CLAIM_MAPPINGS {
        return Err(bad(format!(
            "Config.{what}: {} mappings; at most {MAX_CLAIM_MAPPINGS} (MAX_CLAIM_MAPPINGS)",
            map.len()
        )));
    }
    map.iter()
        .map(|(k, v)| {
            let v = v
                .as_str()
                .filter(|v| {
                    !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                })
                .ok_or_else(|| {
                    bad(format!(
                        "Config.{what}: claim {k:?} must map to a name of letters, digits and '_'"
                    ))
                })?;
            Ok((k.clone(), v.to_string()))
        })
        .collect()
}

fn algorithm(name: &str) -> Result<Algorithm, ApiError> {
    Ok(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        other => {
            return Err(bad(format!(
                "Config.JWTSupportedAlgs: {other:?} is not a supported signing algorithm (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)"
            )))
        }
    })
}

/// A PEM public key, as whatever kind it is.
fn decoding_key(pem: &str) -> Option<DecodingKey> {
    let b = pem.as_bytes();
    DecodingKey::from_rsa_pem(b)
        .or_else(|_| DecodingKey::from_ec_pem(b))
        .or_else(|_| DecodingKey::from_ed_pem(b))
        .ok()
}

impl JwtConfig {
    /// From the stored or submitted `Config` object (keys in any case).
    pub(crate) fn parse(config: &Value) -> Result<JwtConfig, ApiError> {
        let Some(map) = config.as_object() else {
            return Err(bad("Config: a JSON object"));
        };
        let get = |k: &str| mesh_wire::field(map, k);
        const KNOWN: [&str; 11] = [
            "JWTValidationPubKeys",
            "JWTSupportedAlgs",
            "BoundIssuer",
            "BoundAudiences",
            "ClaimMappings",
            "ListClaimMappings",
            "ExpirationLeeway",
            "NotBeforeLeeway",
            "ClockSkewLeeway",
            "JWKSURL",
            "OIDCDiscoveryURL",
        ];
        if let Some(k) = map
            .keys()
            .find(|k| !KNOWN.iter().any(|n| mesh_wire::same_key(k, n)))
        {
            return Err(bad(format!(
                "Config: unknown field {k:?} for a jwt auth method"
            )));
        }
        for remote in ["JWKSURL", "OIDCDiscoveryURL"] {
            if get(remote)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
            {
                return Err(bad(format!(
                    "Config.{remote}: mesh does not fetch keys; give them in JWTValidationPubKeys"
                )));
            }
        }
        let pems = strings(get("JWTValidationPubKeys"), "JWTValidationPubKeys")?;
        if pems.is_empty() {
            return Err(bad(
                "Config.JWTValidationPubKeys: at least one PEM public key is required",
            ));
        }
        if pems.len() > MAX_JWT_KEYS {
            return Err(bad(format!(
                "Config.JWTValidationPubKeys: {} keys; at most {MAX_JWT_KEYS} (MAX_JWT_KEYS)",
                pems.len()
            )));
        }
        let keys = pems
            .iter()
            .enumerate()
            .map(|(i, p)| {
                decoding_key(p).ok_or_else(|| {
                    bad(format!(
                        "Config.JWTValidationPubKeys[{i}]: not a PEM RSA, EC or Ed25519 public key"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut algorithms = strings(get("JWTSupportedAlgs"), "JWTSupportedAlgs")?
            .iter()
            .map(|a| algorithm(a))
            .collect::<Result<Vec<_>, _>>()?;
        if algorithms.is_empty() {
            // Consul's default.
            algorithms.push(Algorithm::RS256);
        }
        let leeway = |k: &str| -> Result<u64, ApiError> {
            match get(k) {
                None | Some(Value::Null) => Ok(0),
                Some(Value::String(s)) if s.is_empty() => Ok(0),
                Some(Value::String(s)) => mesh_types::parse_go_duration(s)
                    .map(|d| d.as_secs())
                    .map_err(|e| bad(format!("Config.{k} {s:?}: {e}"))),
                Some(Value::Number(n)) => Ok(n.as_u64().unwrap_or(0) / 1_000_000_000),
                Some(_) => Err(bad(format!("Config.{k}: a duration"))),
            }
        };
        let leeway_secs = leeway("ExpirationLeeway")?
            .max(leeway("NotBeforeLeeway")?)
            .max(leeway("ClockSkewLeeway")?)
            .min(3600);
        Ok(JwtConfig {
            keys,
            algorithms,
            bound_issuer: get("BoundIssuer")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            bound_audiences: strings(get("BoundAudiences"), "BoundAudiences")?,
            claim_mappings: string_map(get("ClaimMappings"), "ClaimMappings")?,
            list_claim_mappings: string_map(get("ListClaimMappings"), "ListClaimMappings")?,
            leeway_secs,
        })
    }

    /// The verified claims of `jwt`, or why it is refused.
    fn verify(&self, jwt: &str) -> Result<Map<String, Value>, String> {
        let header = jsonwebtoken::decode_header(jwt).map_err(|e| format!("not a JWT: {e}"))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(format!("signing algorithm {:?} is not allowed", header.alg));
        }
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.leeway = self.leeway_secs;
        validation.validate_nbf = true;
        // exp is checked when present, as Consul does; not required.
        validation.required_spec_claims.clear();
        if self.bound_audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.bound_audiences);
        }
        if !self.bound_issuer.is_empty() {
            validation.set_issuer(&[&self.bound_issuer]);
        }
        let mut last = String::from("no key");
        for key in &self.keys {
            match jsonwebtoken::decode::<Map<String, Value>>(jwt, key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }

    /// The values selectors and bind names see: `value.<name>` for each
    /// mapped claim, `list.<name>` for each mapped list claim.
    fn mapped(
        &self,
        claims: &Map<String, Value>,
    ) -> Result<(BTreeMap<String, String>, Value), String> {
        let claim = |path: &str| -> Option<&Value> {
            match path.strip_prefix('/') {
                Some(_) => {
                    let root = claims.get(path.split('/').nth(1)?)?;
                    let rest: String = path.split('/').skip(2).map(|p| format!("/{p}")).collect();
                    if rest.is_empty() {
                        Some(root)
                    } else {
                        root.pointer(&rest)
                    }
                }
                None => claims.get(path),
            }
        };
        let mut values = BTreeMap::new();
        for (path, name) in &self.claim_mappings {
            let text = match claim(path) {
                None => continue,
                Some(Value::String(s)) => s.clone(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Number(n)) => n.to_string(),
                Some(_) => return Err(format!("claim {path:?} is not a string, number or bool")),
            };
            values.insert(name.clone(), text);
        }
        let mut lists = Map::new();
        for (path, name) in &self.list_claim_mappings {
            let items: Vec<Value> = match claim(path) {
                None => continue,
                Some(Value::Array(a)) => a.clone(),
                Some(v @ Value::String(_)) => vec![v.clone()],
                Some(_) => return Err(format!("list claim {path:?} is not a list")),
            };
            if items.len() > MAX_LIST_CLAIM_VALUES {
                return Err(format!(
                    "list claim {path:?} has {} values; at most {MAX_LIST_CLAIM_VALUES} (MAX_LIST_CLAIM_VALUES)",
                    items.len()
                ));
            }
            lists.insert(name.clone(), Value::Array(items));
        }
        let view = json!({
            "value": values.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<Map<_, _>>(),
            "list": lists,
        });
        Ok((values, view))
    }
}

// === auth methods ===

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct MethodBody {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    displayname: String,
    description: String,
    /// A Go duration.
    maxtokenttl: String,
    tokenlocality: String,
    config: Value,
    createindex: u64,
    modifyindex: u64,
    namespacerules: Value,
    namespace: String,
    partition: String,
}

fn method_json(m: &AclAuthMethod) -> Value {
    let config: Value = serde_json::from_str(&m.config_json).unwrap_or(Value::Null);
    let mut v = json!({
        "Name": m.name,
        "Type": m.kind,
        "DisplayName": m.display_name,
        "Description": m.description,
        "Config": config,
        "CreateIndex": m.create_index,
        "ModifyIndex": m.modify_index,
    });
    if m.max_token_ttl_ms > 0 {
        v["MaxTokenTTL"] =
            mesh_types::format_go_duration(std::time::Duration::from_millis(m.max_token_ttl_ms))
                .into();
    }
    if !m.token_locality.is_empty() {
        v["TokenLocality"] = m.token_locality.clone().into();
    }
    v
}

fn method_from(body: &[u8], path_name: Option<&str>) -> Result<AclAuthMethod, ApiError> {
    let b: MethodBody = crate::wire::parse_value(object(body, "auth method")?, "auth method")?;
    let name = match path_name {
        Some(p) if !b.name.is_empty() && b.name != p => {
            return Err(bad(format!(
                "Name {:?} in the body is not the auth method {p:?} in the path",
                b.name
            )))
        }
        Some(p) => p.to_string(),
        None => b.name.clone(),
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if name.is_empty() || name.len() > 128 || !name.chars().all(valid) {
        return Err(bad(format!(
            "auth method Name {name:?} is invalid: 1 to 128 letters, digits, '-' and '_'"
        )));
    }
    if b.kind != "jwt" {
        return Err(bad(format!(
            "auth method Type {:?} is not supported (mesh supports \"jwt\")",
            b.kind
        )));
    }
    if !matches!(b.tokenlocality.as_str(), "" | "local" | "global") {
        return Err(bad(format!(
            "TokenLocality {:?}: \"local\" or \"global\"",
            b.tokenlocality
        )));
    }
    let ttl = if b.maxtokenttl.is_empty() {
        std::time::Duration::ZERO
    } else {
        mesh_types::parse_go_duration(&b.maxtokenttl)
            .map_err(|e| bad(format!("MaxTokenTTL {:?}: {e}", b.maxtokenttl)))?
    };
    if ttl > MAX_LOGIN_TOKEN_TTL {
        return Err(bad(format!(
            "MaxTokenTTL {}: at most {} (MAX_LOGIN_TOKEN_TTL)",
            b.maxtokenttl,
            mesh_types::format_go_duration(MAX_LOGIN_TOKEN_TTL)
        )));
    }
    JwtConfig::parse(&b.config)?;
    Ok(AclAuthMethod {
        name,
        kind: b.kind,
        display_name: b.displayname,
        description: b.description,
        max_token_ttl_ms: ttl.as_millis() as u64,
        token_locality: b.tokenlocality,
        config_json: b.config.to_string(),
        ..Default::default()
    })
}

async fn write_method(api: &Api, method: AclAuthMethod) -> Result<Response, ApiError> {
    let name = method.name.clone();
    let show = |s: &Catalog| s.acl_auth_method(&name).map(method_json);
    written_then_shown(api, Command::AclAuthMethodSet { method }, show, || {
        format!("ACL auth method {name:?}")
    })
    .await
}

/// `PUT /v1/acl/auth-method`.
pub(crate) async fn method_create(
    State(api): State<Api>,
    body: Bytes,
) -> Result<Response, ApiError> {
    enabled(&api)?;
    let method = method_from(&body, None)?;
    if api
        .state
        .read(|s| s.acl_auth_method(&method.name).is_some())
    {
        return Err(bad(format!(
            "an auth method named {:?} already exists; update it with PUT /v1/acl/auth-method/{}",
            method.name, method.name
        )));
    }
    write_method(&api, method).await
}

/// `PUT /v1/acl/auth-method/:name`.
pub(crate) async fn method_update(
    State(api): State<Api>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    enabled(&api)?;
    if api.state.read(|s| s.acl_auth_method(&name).is_none()) {
        return Err(not_found(format!("ACL auth method {name:?}")));
    }
    let method = method_from(&body, Some(&name))?;
    write_method(&api, method).await
}

pub(crate) async fn method_get(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    enabled(&api)?;
    shown(
        &api,
        |s| s.acl_auth_method(&name).map(method_json),
        || format!("ACL auth method {name:?}"),
    )
}

pub(crate) async fn method_delete(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    enabled(&api)?;
    api.apply(Command::AclAuthMethodDelete { name }).await?;
    Ok(Json(true).into_response())
}

pub(crate) async fn methods(State(api): State<Api>) -> Result<Response, ApiError> {
    enabled(&api)?;
    let list: Vec<Value> = api.state.read(|s| {
        s.acl_auth_methods()
            .map(|m| {
                let mut v = method_json(m);
                // The list shows no configuration, as Consul's does not.
                v.as_object_mut().map(|o| o.remove("Config"));
                v
            })
            .collect()
    });
    Ok(Json(list).into_response())
}

// === binding rules ===

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RuleBody {
    id: String,
    description: String,
    authmethod: String,
    selector: String,
    bindtype: String,
    bindname: String,
    bindvars: Option<BindVarsBody>,
    createindex: u64,
    modifyindex: u64,
    namespace: String,
    partition: String,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct BindVarsBody {
    name: String,
}

fn rule_json(r: &AclBindingRule) -> Value {
    let mut v = json!({
        "ID": r.id,
        "Description": r.description,
        "AuthMethod": r.auth_method,
        "Selector": r.selector,
        "BindType": r.bind_type,
        "BindName": r.bind_name,
        "CreateIndex": r.create_index,
        "ModifyIndex": r.modify_index,
    });
    if !r.bind_vars_name.is_empty() {
        v["BindVars"] = json!({"Name": r.bind_vars_name});
    }
    v
}

/// Checks a `${value.x}` template: only mapped `value.` names, closed braces.
fn check_template(what: &str, text: &str, method: &JwtConfig) -> Result<(), ApiError> {
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start..].find('}') else {
            return Err(bad(format!("{what} {text:?}: an unclosed ${{")));
        };
        let var = &rest[start + 2..start + len];
        let known = var
            .strip_prefix("value.")
            .is_some_and(|n| method.claim_mappings.values().any(|m| m == n));
        if !known {
            return Err(bad(format!(
                "{what} {text:?}: ${{{var}}} is not a mapped claim (value.<name> of ClaimMappings)"
            )));
        }
        rest = &rest[start + len..];
    }
    Ok(())
}

fn rule_from(api: &Api, body: &[u8], id: String) -> Result<AclBindingRule, ApiError> {
    let b: RuleBody = crate::wire::parse_value(object(body, "binding rule")?, "binding rule")?;
    if !b.id.is_empty() && b.id != id {
        return Err(bad(format!(
            "ID {:?} in the body is not the binding rule {id:?} being written",
            b.id
        )));
    }
    let method = api
        .state
        .read(|s| s.acl_auth_method(&b.authmethod).cloned())
        .ok_or_else(|| {
            bad(format!(
                "AuthMethod {:?}: no such auth method",
                b.authmethod
            ))
        })?;
    let config = stored_config(&method)?;
    if !mesh_state::BIND_TYPES.contains(&b.bindtype.as_str()) {
        return Err(bad(format!(
            "BindType {:?} is not one of {}",
            b.bindtype,
            mesh_state::BIND_TYPES.join(", ")
        )));
    }
    if b.bindname.is_empty() {
        return Err(bad("BindName is required"));
    }
    check_template("BindName", &b.bindname, &config)?;
    let vars_name = b.bindvars.map(|v| v.name).unwrap_or_default();
    if b.bindtype == "templated-policy" {
        if !mesh_types::TEMPLATED_POLICY_NAMES.contains(&b.bindname.as_str()) {
            return Err(bad(format!(
                "BindName {:?}: not a templated policy ({})",
                b.bindname,
                mesh_types::TEMPLATED_POLICY_NAMES.join(", ")
            )));
        }
        check_template("BindVars.Name", &vars_name, &config)?;
    }
    if !b.selector.is_empty() {
        mesh_filter::Filter::parse(&b.selector)
            .map_err(|e| bad(format!("Selector {:?}: {e}", b.selector)))?;
    }
    Ok(AclBindingRule {
        id,
        description: b.description,
        auth_method: b.authmethod,
        selector: b.selector,
        bind_type: b.bindtype,
        bind_name: b.bindname,
        bind_vars_name: vars_name,
        ..Default::default()
    })
}

fn stored_config(method: &AclAuthMethod) -> Result<JwtConfig, ApiError> {
    let config: Value = serde_json::from_str(&method.config_json).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("stored auth method config: {e}"),
        )
    })?;
    JwtConfig::parse(&config)
}

async fn write_rule(api: &Api, rule: AclBindingRule) -> Result<Response, ApiError> {
    let id = rule.id.clone();
    let show = |s: &Catalog| s.acl_binding_rule(&id).map(rule_json);
    written_then_shown(api, Command::AclBindingRuleSet { rule }, show, || {
        format!("ACL binding rule {id}")
    })
    .await
}

pub(crate) async fn rule_create(State(api): State<Api>, body: Bytes) -> Result<Response, ApiError> {
    enabled(&api)?;
    let rule = rule_from(&api, &body, uuid::Uuid::new_v4().to_string())?;
    write_rule(&api, rule).await
}

pub(crate) async fn rule_update(
    State(api): State<Api>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    enabled(&api)?;
    if api.state.read(|s| s.acl_binding_rule(&id).is_none()) {
        return Err(not_found(format!("ACL binding rule {id}")));
    }
    let rule = rule_from(&api, &body, id)?;
    write_rule(&api, rule).await
}

pub(crate) async fn rule_get(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    enabled(&api)?;
    shown(
        &api,
        |s| s.acl_binding_rule(&id).map(rule_json),
        || format!("ACL binding rule {id}"),
    )
}

pub(crate) async fn rule_delete(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    enabled(&api)?;
    api.apply(Command::AclBindingRuleDelete { id }).await?;
    Ok(Json(true).into_response())
}

/// `GET /v1/acl/binding-rules[?authmethod=<name>]`.
pub(crate) async fn rules(
    State(api): State<Api>,
    params: crate::Params,
) -> Result<Response, ApiError> {
    enabled(&api)?;
    let method = params.map().get("authmethod").cloned().unwrap_or_default();
    let list: Vec<Value> = api.state.read(|s| {
        s.acl_binding_rules()
            .filter(|r| method.is_empty() || r.auth_method == method)
            .map(rule_json)
            .collect()
    });
    Ok(Json(list).into_response())
}

// === login and logout ===

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct LoginBody {
    authmethod: String,
    bearertoken: String,
    meta: BTreeMap<String, String>,
    namespace: String,
    partition: String,
}

/// `${value.x}` filled in; `None` if a variable has no value.
fn interpolate(text: &str, values: &BTreeMap<String, String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let len = rest[start..].find('}')?;
        let var = rest[start + 2..start + len].strip_prefix("value.")?;
        out.push_str(values.get(var)?);
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// What the matching binding rules grant, as token parts.
fn bindings(
    s: &Catalog,
    method: &str,
    values: &BTreeMap<String, String>,
    view: &Value,
    dc: &str,
) -> (Vec<String>, AclTokenLinks) {
    let mut policies = Vec::new();
    let mut links = AclTokenLinks::default();
    for rule in s.acl_binding_rules().filter(|r| r.auth_method == method) {
        let selected = rule.selector.is_empty()
            || mesh_filter::Filter::parse(&rule.selector).is_ok_and(|f| f.matches(view));
        if !selected {
            continue;
        }
        let Some(name) = interpolate(&rule.bind_name, values) else {
            continue;
        };
        // Interpolated names end up inside rule text: same check as identities.
        if name.is_empty()
            || name
                .chars()
                .any(|c| matches!(c, '"' | '\\') || c.is_control())
        {
            continue;
        }
        match rule.bind_type.as_str() {
            "service" => links.service_identities.push(AclServiceIdentity {
                service_name: name,
                datacenters: Vec::new(),
            }),
            "node" => links.node_identities.push(AclNodeIdentity {
                node_name: name,
                datacenter: dc.to_string(),
            }),
            "role" => {
                if let Some(r) = s.acl_role_by_name(&name) {
                    if !links.roles.contains(&r.id) {
                        links.roles.push(r.id.clone());
                    }
                }
            }
            "policy" => {
                if let Some(p) = s.acl_policy_by_name(&name) {
                    if !policies.contains(&p.id) {
                        policies.push(p.id);
                    }
                }
            }
            "templated-policy" => {
                let Some(var) = interpolate(&rule.bind_vars_name, values) else {
                    continue;
                };
                links.templated_policies.push(AclTemplatedPolicy {
                    template_name: name,
                    name: var,
                    datacenters: Vec::new(),
                });
            }
            _ => {}
        }
    }
    (policies, links)
}

fn denied(why: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, format!("Permission denied: {why}"))
}

/// `POST /v1/acl/login`: a verified JWT becomes a token.
pub(crate) async fn login(State(api): State<Api>, body: Bytes) -> Result<Response, ApiError> {
    enabled(&api)?;
    let b: LoginBody = crate::wire::parse_value(object(&body, "login")?, "login")?;
    if b.bearertoken.len() > MAX_BEARER_TOKEN_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("BearerToken: over {MAX_BEARER_TOKEN_BYTES} bytes (MAX_BEARER_TOKEN_BYTES)"),
        ));
    }
    if b.bearertoken.is_empty() {
        return Err(bad("BearerToken is required"));
    }
    let method = api
        .state
        .read(|s| s.acl_auth_method(&b.authmethod).cloned())
        .ok_or_else(|| {
            bad(format!(
                "AuthMethod {:?}: no such auth method",
                b.authmethod
            ))
        })?;
    let config = stored_config(&method)?;
    let claims = config.verify(&b.bearertoken).map_err(|e| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            format!("Permission denied: the bearer token was refused: {e}"),
        )
    })?;
    let (values, view) = config.mapped(&claims).map_err(denied)?;
    let dc = api.agent.datacenter();
    let (policies, mut links) = api
        .state
        .read(|s| bindings(s, &method.name, &values, &view, &dc));
    if policies.is_empty() && links.is_empty() {
        return Err(denied(
            "no binding rule of the auth method matched the token's claims",
        ));
    }
    links.auth_method = method.name.clone();
    if method.max_token_ttl_ms > 0 {
        links.expiration_unix_ms = mesh_state::now_unix_ms() + method.max_token_ttl_ms;
    }
    let meta = if b.meta.is_empty() {
        String::new()
    } else {
        format!(": {}", serde_json::to_string(&b.meta).unwrap_or_default())
    };
    let token = AclToken {
        accessor_id: uuid::Uuid::new_v4().to_string(),
        secret_id: uuid::Uuid::new_v4().to_string(),
        description: format!("token created via login{meta}"),
        policies,
        local: method.token_locality != "global",
        create_time: crate::acl::now_rfc3339(),
        ..Default::default()
    };
    crate::acl::write_token(&api, token, links).await
}

/// `POST /v1/acl/logout`: deletes the calling token, if a login made it.
pub(crate) async fn logout(
    State(api): State<Api>,
    headers: HeaderMap,
    params: crate::Params,
) -> Result<Response, ApiError> {
    enabled(&api)?;
    let secret = crate::acl_caller::request_secret(&headers, &params.map())
        .ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "ACL not found: no token given"))?;
    let found = api.state.read(|s| {
        s.acl_token_by_secret(&secret).map(|t| {
            (
                t.accessor_id.clone(),
                s.acl_token_links(&t.accessor_id).auth_method,
            )
        })
    });
    match found {
        Some((accessor, method)) if !method.is_empty() => {
            api.apply(Command::AclTokenDelete {
                accessor_id: accessor,
            })
            .await?;
            Ok(Json(true).into_response())
        }
        Some(_) => Err(denied("only a token made by /v1/acl/login can log out")),
        None => Err(ApiError::new(StatusCode::FORBIDDEN, "ACL not found")),
    }
}
