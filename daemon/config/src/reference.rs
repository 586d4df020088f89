//! docs/config.md, the agent config reference, rendered from the config
//! types themselves (their keys and doc comments, through a JSON schema),
//! so the page cannot drift from what the agent reads. The test fails on
//! drift; `MESH_DOCS_WRITE=1` rewrites the page.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::consul_only::CONSUL_ONLY_KEYS;
use crate::raw::{OneOrMany, RawConfig};

impl<T: schemars::JsonSchema> schemars::JsonSchema for OneOrMany<T> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("OneOrMany_{}", T::schema_name()).into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let one = generator.subschema_for::<T>();
        schemars::json_schema!({"anyOf": [one, {"type": "array", "items": one}]})
    }
}

const INTRO: &str = "\
# Agent configuration reference

<!-- Generated from daemon/config/src/raw.rs (and tls.rs, autopilot.rs) by
`MESH_DOCS_WRITE=1 cargo test -p mesh-config reference`; do not edit by hand. -->

`mesh agent` reads HCL or JSON files given with `-config-file` (one file)
and `-config-dir` (every `*.hcl` and `*.json` in it, in name order), then
the command-line flags. Later sources win for single values; lists are
appended and blocks merged. Keys are Consul's. An unknown key is an error
that names `file:line:col` and suggests the nearest known key; Consul keys
mesh does not implement are accepted with one warning each (listed at the
end). `mesh validate FILE...` checks files without starting an agent.

Durations are Go-style strings (`\"30s\"`, `\"1m30s\"`). A port of `-1`
turns its listener off and `0` picks a free port. Every key below is
optional.
";

/// The page, rendered from `RawConfig`'s schema.
pub(crate) fn render() -> String {
    let schema = schemars::schema_for!(RawConfig);
    let root = schema.as_value();
    let empty = serde_json::Map::new();
    let defs = root["$defs"].as_object().unwrap_or(&empty);
    let mut out = String::from(INTRO);
    let mut blocks: Vec<(String, Vec<String>)> = Vec::new();
    out.push_str("\n## Top-level keys\n\n");
    table(root, "", &mut blocks, &mut out);
    let mut next = 0;
    while next < blocks.len() {
        let (def, paths) = blocks[next].clone();
        next += 1;
        let names: Vec<String> = paths.iter().map(|p| format!("`{p}`")).collect();
        out.push_str(&format!("\n## {}\n\n", names.join(", ")));
        let body = &defs[&def];
        if let Some(text) = body["description"].as_str() {
            out.push_str(&one_line(text));
            out.push_str("\n\n");
        }
        table(body, &paths[0], &mut blocks, &mut out);
    }
    out.push_str(
        "\n## Consul keys accepted and ignored\n\n\
         A Consul config with these keys loads; each one present gets a warning \
         naming it and its place, and has no effect.\n\n",
    );
    for key in CONSUL_ONLY_KEYS {
        out.push_str(&format!("- `{key}`\n"));
    }
    out
}

/// One table of keys; nested blocks are queued in `blocks` (by schema
/// definition, so a block type used in several places is listed once).
fn table(object: &Value, prefix: &str, blocks: &mut Vec<(String, Vec<String>)>, out: &mut String) {
    out.push_str("| Key | Type | Description |\n|---|---|---|\n");
    let empty = serde_json::Map::new();
    let props: BTreeMap<&String, &Value> = object["properties"]
        .as_object()
        .unwrap_or(&empty)
        .iter()
        .collect();
    for (name, prop) in props {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let (ty, def) = type_of(prop);
        let ty = match def {
            Some(def) => {
                // A list of blocks is described by its element's block.
                let list = ty.starts_with("list of");
                let path = if list {
                    format!("{path}[]")
                } else {
                    path.clone()
                };
                match blocks.iter_mut().find(|(d, _)| *d == def) {
                    Some((_, paths)) => paths.push(path),
                    None => blocks.push((def, vec![path])),
                }
                if list {
                    "list of blocks (below)"
                } else {
                    "block (below)"
                }
                .to_string()
            }
            None => ty,
        };
        let text = prop["description"]
            .as_str()
            .map(one_line)
            .unwrap_or_default();
        out.push_str(&format!(
            "| `{name}` | {ty} | {} |\n",
            text.replace('|', "\\|")
        ));
    }
}

/// A readable type, and the definition name when it is a block.
fn type_of(prop: &Value) -> (String, Option<String>) {
    if let Some(reference) = prop["$ref"].as_str() {
        let def = reference.rsplit('/').next().unwrap_or_default().to_string();
        return (String::new(), Some(def));
    }
    if let Some(options) = prop["anyOf"].as_array() {
        let kinds: Vec<(String, Option<String>)> = options
            .iter()
            .filter(|o| o["type"] != "null")
            .map(type_of)
            .collect();
        if let [(ty, def)] = kinds.as_slice() {
            return (ty.clone(), def.clone());
        }
        let names: Vec<String> = kinds.into_iter().map(|(t, _)| t).collect();
        return (names.join(" or "), None);
    }
    let types: Vec<&str> = match &prop["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let ty = types.into_iter().find(|t| *t != "null");
    let text = match ty {
        Some("array") => {
            let (item, def) = type_of(&prop["items"]);
            return (format!("list of {item}"), def);
        }
        Some("object") => format!("map of {}", type_of(&prop["additionalProperties"]).0),
        Some("integer") => "integer".into(),
        Some("number") => "number".into(),
        Some("boolean") => "bool".into(),
        Some("string") => "string".into(),
        Some(other) => other.into(),
        None => "any (JSON)".into(),
    };
    (text, None)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_page_matches_the_config_types() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.md");
        let want = render();
        if std::env::var_os("MESH_DOCS_WRITE").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/config.md is out of date with the config types; run \
             `MESH_DOCS_WRITE=1 cargo test -p mesh-config reference` and commit it"
        );
        // Every key the agent reads is on the page: spot-check a nested one.
        assert!(want.contains("| `grpc_tls` |") && want.contains("`tls.defaults`"));
    }
}
