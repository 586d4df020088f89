//! Conversions between Terraform values and the agent's JSON, and turning
//! client errors into diagnostics.

use std::collections::BTreeMap;

use serde_json::Value as Json;
use tfplug::{AttrPath, Attribute, Diagnostics, Value};

/// The owner every write declares (`X-Mesh-Owner`).
pub const OWNER: &str = "terraform";

/// The argument that lets an apply take an object over from another owner.
pub fn takeover_attr() -> Attribute {
    Attribute::bool("takeover").default(false).describe(
        "Take the object over on apply when another owner (a mesh.d file, or the API) manages it. \
         Without it, such an object is an error at plan.",
    )
}

/// Whether a configuration or state asks to take objects over.
pub fn takeover(v: &Value) -> bool {
    v.get("takeover").as_bool() == Some(true)
}

/// Copies `takeover` from the state into a value read from the agent
/// (false after an import), so reading never shows it as drift.
pub fn keep_takeover(state: &Value, read: &mut Value) {
    if !read.is_null() {
        read.set("takeover", takeover(state).into());
    }
}

/// Who manages an object, from its JSON (`Owner`); `None` when absent.
pub fn owner_of(object: &Json) -> Option<String> {
    object["Owner"].as_str().map(str::to_string)
}

/// At plan: an object another owner manages is an error on this resource
/// (not a diff that fails at apply), unless `takeover = true`.
pub fn check_owner(owner: Option<&str>, value: &Value, what: &str, diags: &mut Diagnostics) {
    let Some(owner) = owner.filter(|o| *o != OWNER) else {
        return;
    };
    if takeover(value) {
        return;
    }
    // One text for plan and destroy: Terraform's destroy runs a normal
    // plan first, so both reach the user through either path.
    let detail = format!(
        "Terraform does not overwrite or destroy objects another owner manages. Set \
         `takeover = true` on this resource to take it over on the next apply (after which \
         it can also be destroyed), or leave it to {owner}: remove this resource with a \
         `removed` block (`lifecycle {{ destroy = false }}`) or `terraform state rm`, or \
         change it where it is declared."
    );
    diags.error(format!("{what} is managed by {owner}"), detail);
}

/// Reports a failed call; a 409 names the owner that holds the object.
pub fn report(diags: &mut Diagnostics, err: mesh_client::Error, what: &str, at: Option<AttrPath>) {
    let (summary, detail) = match &err {
        mesh_client::Error::Status { status: 409, body } => (
            format!("{what} is managed by another owner"),
            format!(
                "{}\nTerraform does not take objects over implicitly: set `takeover = true` on \
                 this resource, change it where it is declared, or remove it there first.",
                body.trim()
            ),
        ),
        mesh_client::Error::Status { status: 400, body } => (
            format!("The agent rejected {what}"),
            body.trim().to_string(),
        ),
        _ => (format!("Request failed: {what}"), err.to_string()),
    };
    match at {
        Some(p) => diags.attr_error(p, summary, detail),
        None => diags.error(summary, detail),
    }
}

/// String attribute, empty when null.
pub fn s(v: &Value, name: &str) -> String {
    v.get(name).as_str().unwrap_or_default().to_string()
}

/// Number attribute as an integer (0 when null).
pub fn n(v: &Value, name: &str) -> i64 {
    v.get(name).as_i64().unwrap_or_default()
}

/// List of strings (empty when null).
pub fn strings(v: &Value) -> Vec<String> {
    v.items()
        .iter()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

/// Map of strings (empty when null).
pub fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.entries()
        .map(|m| {
            m.iter()
                .filter_map(|(k, x)| Some((k.clone(), x.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// A Terraform list of strings from JSON.
pub fn list_from_json(j: &Json) -> Value {
    Value::List(
        j.as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str())
            .map(Value::from)
            .collect(),
    )
}

/// A Terraform map of strings from a JSON object.
pub fn map_from_json(j: &Json) -> Value {
    Value::Map(
        j.as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str().unwrap_or_default())))
            .collect(),
    )
}

/// A Terraform string from JSON (empty for missing).
pub fn str_from_json(j: &Json) -> Value {
    Value::from(j.as_str().unwrap_or_default())
}

/// Whether a value is what the server fills in when nothing was set.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::List(l) => l.is_empty(),
        Value::Map(m) => m.is_empty(),
        Value::Number(n) => *n == 0.0,
        _ => false,
    }
}

/// The value read from the server, unless it is the server's empty default
/// and the prior state left it unset: then keep null, so there is no diff.
pub fn keep_unset(prior: &Value, read: Value) -> Value {
    if prior.is_null() && is_empty(&read) {
        Value::Null
    } else {
        read
    }
}

/// Same as `keep_unset` for attribute `name` of `prior` and `read`.
pub fn normalise(prior: &Value, read: &mut Value, names: &[&str]) {
    for name in names {
        let v = std::mem::take(read.get_mut(name).expect("object"));
        read.set(name, keep_unset(prior.get(name), v));
    }
}

/// Optional string: omitted from JSON when null or empty.
pub fn put_str(obj: &mut serde_json::Map<String, Json>, key: &str, v: &Value) {
    if let Some(s) = v.as_str().filter(|s| !s.is_empty()) {
        obj.insert(key.to_string(), Json::from(s));
    }
}
