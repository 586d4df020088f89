//! Intentions in Consul's JSON: the `/v1/connect/intentions` shape and the
//! `service-intentions` config entry (Name = destination, Sources[]).
//! Input keys are folded (case and underscores ignored) like every body.

use std::collections::BTreeMap;

use mesh_types::{HeaderMatch, HttpMatch, Intention, IntentionAction, Permission};
use serde_json::{json, Map, Value};

use crate::{fold_keys, WireError};

fn bad(msg: impl Into<String>) -> WireError {
    WireError::new(msg.into())
}

fn obj<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, WireError> {
    v.as_object()
        .ok_or_else(|| bad(format!("{what} must be a JSON object")))
}

fn opt_str(m: &Map<String, Value>, key: &str, what: &str) -> Result<Option<String>, WireError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(bad(format!("{what}: {key} must be a string, got {other}"))),
    }
}

fn opt_bool(m: &Map<String, Value>, key: &str, what: &str) -> Result<bool, WireError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(bad(format!("{what}: {key} must be a boolean, got {other}"))),
    }
}

fn string_map(
    m: &Map<String, Value>,
    key: &str,
    what: &str,
) -> Result<BTreeMap<String, String>, WireError> {
    // Meta keeps its user-chosen keys; look it up in any spelling.
    match crate::field(m, key) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(bad(format!(
                    "{what}: {key}[{k:?}] must be a string, got {other}"
                ))),
            })
            .collect(),
        Some(other) => Err(bad(format!("{what}: {key} must be an object, got {other}"))),
    }
}

/// Parse an action ("allow"/"deny"), naming where it came from on error.
pub fn parse_action(v: Option<String>, what: &str) -> Result<Option<IntentionAction>, WireError> {
    match v {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => IntentionAction::parse(&s)
            .map(Some)
            .ok_or_else(|| bad(format!("{what}: invalid Action {s:?} (allow or deny)"))),
    }
}

fn check_regex(re: &Option<String>, what: &str) -> Result<(), WireError> {
    if let Some(re) = re {
        regex::Regex::new(re).map_err(|e| bad(format!("{what}: invalid regex {re:?}: {e}")))?;
    }
    Ok(())
}

fn parse_header(v: &Value, what: &str) -> Result<HeaderMatch, WireError> {
    let folded = fold_keys(v.clone());
    let m = obj(&folded, what)?;
    let h = HeaderMatch {
        name: opt_str(m, "name", what)?.unwrap_or_default(),
        present: opt_bool(m, "present", what)?,
        exact: opt_str(m, "exact", what)?,
        prefix: opt_str(m, "prefix", what)?,
        suffix: opt_str(m, "suffix", what)?,
        regex: opt_str(m, "regex", what)?,
        invert: opt_bool(m, "invert", what)?,
    };
    if h.name.is_empty() {
        return Err(bad(format!("{what}: header Name is required")));
    }
    let set = [
        h.present,
        h.exact.is_some(),
        h.prefix.is_some(),
        h.suffix.is_some(),
        h.regex.is_some(),
    ];
    if set.iter().filter(|b| **b).count() > 1 {
        return Err(bad(format!(
            "{what}: header {:?} may set only one of Present, Exact, Prefix, Suffix, Regex",
            h.name
        )));
    }
    check_regex(&h.regex, what)?;
    Ok(h)
}

fn parse_http(v: &Value, what: &str) -> Result<HttpMatch, WireError> {
    let m = obj(v, what)?;
    let methods = match m.get("methods") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(|s| s.to_ascii_uppercase())
                    .ok_or_else(|| bad(format!("{what}: Methods must be strings")))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad(format!("{what}: Methods must be a list"))),
    };
    let headers = match m.get("header") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|h| parse_header(h, what))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad(format!("{what}: Header must be a list"))),
    };
    let http = HttpMatch {
        path_exact: opt_str(m, "pathexact", what)?,
        path_prefix: opt_str(m, "pathprefix", what)?,
        path_regex: opt_str(m, "pathregex", what)?,
        methods,
        headers,
    };
    let paths = [&http.path_exact, &http.path_prefix, &http.path_regex];
    if paths.iter().filter(|p| p.is_some()).count() > 1 {
        return Err(bad(format!(
            "{what}: set at most one of PathExact, PathPrefix, PathRegex"
        )));
    }
    for p in [&http.path_exact, &http.path_prefix].into_iter().flatten() {
        if !p.starts_with('/') {
            return Err(bad(format!("{what}: path {p:?} must begin with '/'")));
        }
    }
    check_regex(&http.path_regex, what)?;
    Ok(http)
}

/// Parse a folded `Permissions` list.
pub fn parse_permissions(v: Option<&Value>, what: &str) -> Result<Vec<Permission>, WireError> {
    let list = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(bad(format!("{what}: Permissions must be a list"))),
    };
    list.iter()
        .enumerate()
        .map(|(n, p)| {
            let what = format!("{what}: Permissions[{n}]");
            let m = obj(p, &what)?;
            let action = parse_action(opt_str(m, "action", &what)?, &what)?
                .ok_or_else(|| bad(format!("{what}: Action (allow or deny) is required")))?;
            let http = match m.get("http") {
                None | Some(Value::Null) => None,
                Some(h) => Some(parse_http(h, &what)?),
            };
            Ok(Permission { action, http })
        })
        .collect()
}

/// Check what state would refuse, so the API answers 400 before proposing.
pub fn validate(i: &Intention) -> Result<(), WireError> {
    let what = format!("intention {} => {}", i.source, i.destination);
    if i.source.is_empty() || i.destination.is_empty() {
        return Err(bad("SourceName and DestinationName are required"));
    }
    match (i.action.is_some(), i.permissions.is_empty()) {
        (true, false) => Err(bad(format!(
            "{what}: Action and Permissions are mutually exclusive"
        ))),
        (false, true) => Err(bad(format!("{what}: Action (allow or deny) is required"))),
        _ => Ok(()),
    }
}

/// Parse an intention body (`PUT /v1/connect/intentions/exact`, `POST /v1/connect/intentions`).
/// `source`/`destination` from the query win over the body.
pub fn parse_intention(
    body: &Value,
    source: Option<&str>,
    destination: Option<&str>,
    owner: &str,
) -> Result<Intention, WireError> {
    let folded = fold_keys(body.clone());
    let m = obj(&folded, "intention")?;
    let i = Intention {
        id: String::new(),
        source: match source {
            Some(s) => s.to_string(),
            None => opt_str(m, "sourcename", "intention")?.unwrap_or_default(),
        },
        destination: match destination {
            Some(d) => d.to_string(),
            None => opt_str(m, "destinationname", "intention")?.unwrap_or_default(),
        },
        action: parse_action(opt_str(m, "action", "intention")?, "intention")?,
        permissions: parse_permissions(m.get("permissions"), "intention")?,
        description: opt_str(m, "description", "intention")?.unwrap_or_default(),
        meta: string_map(m, "meta", "intention")?,
        owner: owner.to_string(),
        create_index: 0,
        modify_index: 0,
    };
    validate(&i)?;
    Ok(i)
}

/// Parse a `service-intentions` config entry into the intentions it declares.
pub fn parse_service_intentions(
    entry: &Value,
    owner: &str,
) -> Result<(String, Vec<Intention>), WireError> {
    let folded = fold_keys(entry.clone());
    let m = obj(&folded, "service-intentions")?;
    let dest = opt_str(m, "name", "service-intentions")?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("service-intentions: Name (the destination) is required"))?;
    let entry_meta = string_map(m, "meta", "service-intentions")?;
    let sources = match m.get("sources") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(bad("service-intentions: Sources must be a list")),
    };
    let mut out: Vec<Intention> = Vec::new();
    for (n, src) in sources.iter().enumerate() {
        let what = format!("service-intentions {dest:?}: Sources[{n}]");
        let sm = obj(src, &what)?;
        let name = opt_str(sm, "name", &what)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad(format!("{what}: Name is required")))?;
        if out.iter().any(|i| i.source == name) {
            return Err(bad(format!("{what}: source {name:?} is listed twice")));
        }
        let mut meta = string_map(sm, "legacymeta", &what)?;
        if meta.is_empty() {
            meta = entry_meta.clone();
        }
        let i = Intention {
            id: String::new(),
            source: name,
            destination: dest.clone(),
            action: parse_action(opt_str(sm, "action", &what)?, &what)?,
            permissions: parse_permissions(sm.get("permissions"), &what)?,
            description: opt_str(sm, "description", &what)?.unwrap_or_default(),
            meta,
            owner: owner.to_string(),
            create_index: 0,
            modify_index: 0,
        };
        validate(&i)?;
        out.push(i);
    }
    Ok((dest, out))
}

// === output ===

fn permissions_json(list: &[Permission]) -> Value {
    Value::Array(
        list.iter()
            .map(|p| {
                let mut v = json!({ "Action": p.action.as_str() });
                if let Some(h) = &p.http {
                    let mut http = Map::new();
                    for (k, val) in [
                        ("PathExact", &h.path_exact),
                        ("PathPrefix", &h.path_prefix),
                        ("PathRegex", &h.path_regex),
                    ] {
                        if let Some(val) = val {
                            http.insert(k.into(), val.clone().into());
                        }
                    }
                    if !h.methods.is_empty() {
                        http.insert("Methods".into(), json!(h.methods));
                    }
                    if !h.headers.is_empty() {
                        http.insert(
                            "Header".into(),
                            Value::Array(h.headers.iter().map(header_json).collect()),
                        );
                    }
                    v["HTTP"] = Value::Object(http);
                }
                v
            })
            .collect(),
    )
}

fn header_json(h: &HeaderMatch) -> Value {
    let mut m = Map::new();
    m.insert("Name".into(), h.name.clone().into());
    if h.present {
        m.insert("Present".into(), true.into());
    }
    for (k, v) in [
        ("Exact", &h.exact),
        ("Prefix", &h.prefix),
        ("Suffix", &h.suffix),
        ("Regex", &h.regex),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), v.clone().into());
        }
    }
    if h.invert {
        m.insert("Invert".into(), true.into());
    }
    Value::Object(m)
}

/// An intention as `/v1/connect/intentions` serves it.
pub fn intention_json(i: &Intention) -> Value {
    let mut v = json!({
        "ID": i.id,
        "Description": i.description,
        "SourceNS": "default",
        "SourceName": i.source,
        "DestinationNS": "default",
        "DestinationName": i.destination,
        "SourceType": "consul",
        "Meta": i.meta,
        "Precedence": i.precedence(),
        "Owner": i.owner,
        "CreateIndex": i.create_index,
        "ModifyIndex": i.modify_index,
    });
    match i.action {
        Some(a) => v["Action"] = a.as_str().into(),
        None => v["Permissions"] = permissions_json(&i.permissions),
    }
    v
}

/// The `service-intentions` config entry for one destination.
pub fn service_intentions_json<'a>(
    destination: &str,
    list: impl IntoIterator<Item = &'a Intention>,
) -> Value {
    let mut create = u64::MAX;
    let mut modify = 0;
    let mut sources = Vec::new();
    for i in list {
        create = create.min(i.create_index);
        modify = modify.max(i.modify_index);
        let mut s = json!({
            "Name": i.source,
            "Precedence": i.precedence(),
            "Type": "consul",
        });
        match i.action {
            Some(a) => s["Action"] = a.as_str().into(),
            None => s["Permissions"] = permissions_json(&i.permissions),
        }
        if !i.description.is_empty() {
            s["Description"] = i.description.clone().into();
        }
        if !i.meta.is_empty() {
            s["LegacyMeta"] = json!(i.meta);
        }
        sources.push(s);
    }
    json!({
        "Kind": "service-intentions",
        "Name": destination,
        "Sources": sources,
        "CreateIndex": if create == u64::MAX { 0 } else { create },
        "ModifyIndex": modify,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l7_permissions_round_trip() {
        let body = json!({
            "kind": "service-intentions", "name": "api",
            "sources": [
                {"name": "web", "permissions": [
                    {"action": "allow", "http": {"path_prefix": "/v1", "methods": ["get"],
                     "header": [{"Name": "x-env", "Exact": "prod"}]}},
                    {"action": "deny", "http": {"PathRegex": "^/admin"}}
                ]},
                {"Name": "*", "Action": "deny"}
            ]
        });
        let (dest, list) = parse_service_intentions(&body, "api").unwrap();
        assert_eq!(dest, "api");
        assert_eq!(list.len(), 2);
        let http = list[0].permissions[0].http.as_ref().unwrap();
        assert_eq!(http.path_prefix.as_deref(), Some("/v1"));
        assert_eq!(http.methods, ["GET"]);
        assert_eq!(http.headers[0].exact.as_deref(), Some("prod"));
        let rendered = service_intentions_json("api", &list);
        let (_, again) = parse_service_intentions(&rendered, "api").unwrap();
        assert_eq!(again, list);
    }

    #[test]
    fn bad_input_says_where() {
        let e =
            parse_intention(&json!({"Action": "permit"}), Some("a"), Some("b"), "api").unwrap_err();
        assert!(e.to_string().contains("invalid Action \"permit\""), "{e}");
        let e = parse_intention(&json!({}), Some("a"), Some("b"), "api").unwrap_err();
        assert!(
            e.to_string().contains("Action (allow or deny) is required"),
            "{e}"
        );
        let body = json!({"Name": "api", "Sources": [{"Name": "web", "Permissions": [
            {"Action": "allow", "HTTP": {"PathRegex": "(unclosed"}}]}]});
        let e = parse_service_intentions(&body, "api").unwrap_err();
        assert!(
            e.to_string()
                .contains("Sources[0]: Permissions[0]: invalid regex"),
            "{e}"
        );
        let body = json!({"Name": "api", "Sources": [{"Name": "web", "Action": "allow"}, {"Name": "web", "Action": "deny"}]});
        assert!(parse_service_intentions(&body, "api")
            .unwrap_err()
            .to_string()
            .contains("listed twice"));
    }
}
