//! `mesh_config_entry`: any config entry as JSON, compared semantically so
//! formatting and server-added fields (Kind, Name, indexes) never diff.

use std::sync::Arc;

use serde_json::Value as Json;
use tfplug::{AttrPath, Attribute, Block, Diagnostics, Plan, Schema, Validator, Value};

use crate::provider::Shared;
use crate::util::{self, report, s};

/// `mesh_config_entry`.
pub struct ConfigEntryResource(pub Arc<Shared>);

/// Fields the server owns; dropped before comparing.
const SERVER_FIELDS: &[&str] = &["kind", "name", "createindex", "modifyindex", "owner"];

/// The entry body without server-owned fields.
pub fn strip(entry: &Json) -> Json {
    let mut v = entry.clone();
    if let Some(m) = v.as_object_mut() {
        m.retain(|k, _| !SERVER_FIELDS.contains(&k.to_ascii_lowercase().as_str()));
    }
    v
}

/// Parses `config_json`; the error says what is wrong.
pub fn parse_body(text: &str) -> Result<Json, String> {
    let v: Json =
        serde_json::from_str(text).map_err(|e| format!("config_json is not valid JSON: {e}"))?;
    if !v.is_object() {
        return Err("config_json must be a JSON object".into());
    }
    Ok(v)
}

/// PUT the entry `{Kind, Name, ...body}`.
pub async fn put_entry(
    shared: &Shared,
    kind: &str,
    name: &str,
    body: &Json,
    takeover: bool,
    diags: &mut Diagnostics,
) -> bool {
    let Some(c) = shared.client(diags) else {
        return false;
    };
    let c = c.with_takeover(takeover);
    let mut entry = strip(body);
    if let Some(m) = entry.as_object_mut() {
        m.insert("Kind".into(), kind.into());
        m.insert("Name".into(), name.into());
    }
    match c.config_put(&entry).await {
        Ok(()) => true,
        Err(e) => {
            report(
                diags,
                e,
                &format!("config entry {kind}/{name}"),
                Some(AttrPath::attr("name")),
            );
            false
        }
    }
}

/// GET the entry body (stripped), `None` when gone; errors are reported.
pub async fn get_entry(
    shared: &Shared,
    kind: &str,
    name: &str,
    diags: &mut Diagnostics,
) -> Result<Option<Json>, ()> {
    let Some(c) = shared.client(diags) else {
        return Err(());
    };
    match c.config_get(kind, name, &Default::default()).await {
        Ok(v) => Ok(v.map(|v| strip(&v))),
        Err(e) => {
            report(diags, e, &format!("read config entry {kind}/{name}"), None);
            Err(())
        }
    }
}

/// DELETE the entry; a missing one is already deleted.
pub async fn delete_entry(
    shared: &Shared,
    kind: &str,
    name: &str,
    takeover: bool,
    diags: &mut Diagnostics,
) {
    let Some(c) = shared.client(diags) else {
        return;
    };
    let c = c.with_takeover(takeover);
    match c.config_delete(kind, name).await {
        Ok(()) | Err(mesh_client::Error::Status { status: 404, .. }) => {}
        Err(e) => report(
            diags,
            e,
            &format!("delete config entry {kind}/{name}"),
            None,
        ),
    }
}

/// At plan: the entry's owner, if another one manages it, is an error
/// unless `takeover = true` (lookup errors are left to apply).
pub async fn check_entry_owner(
    shared: &Shared,
    kind: &str,
    value: &Value,
    diags: &mut Diagnostics,
) {
    let Some(name) = value.get("name").as_str() else {
        return;
    };
    let mut ignored = Diagnostics::default();
    let Some(c) = shared.client(&mut ignored) else {
        return;
    };
    if let Ok(Some(found)) = c.config_get(kind, name, &Default::default()).await {
        let what = format!("config entry {kind}/{name}");
        util::check_owner(util::owner_of(&found).as_deref(), value, &what, diags);
    }
}

/// Splits an import ID `kind/name`.
pub fn split_id(id: &str, diags: &mut Diagnostics) -> Option<(String, String)> {
    match id.split_once('/') {
        Some((k, n)) if !k.is_empty() && !n.is_empty() => Some((k.to_string(), n.to_string())),
        _ => {
            diags.error(
                "Invalid import ID",
                format!("expected `<kind>/<name>`, got {id:?}"),
            );
            None
        }
    }
}

#[tonic::async_trait]
impl tfplug::Resource for ConfigEntryResource {
    fn type_name(&self) -> &str {
        "mesh_config_entry"
    }

    fn schema(&self) -> Schema {
        let kinds = mesh_types::CONFIG_KINDS
            .iter()
            .map(|k| k.to_string())
            .collect();
        Schema::new(
            Block::new("A config entry of any kind, its body as JSON. Import with `<kind>/<name>`.")
                .attr(Attribute::string("id").computed().use_state_for_unknown().describe("`<kind>/<name>`."))
                .attr(Attribute::string("kind").required().requires_replace().validate(Validator::OneOf(kinds)).describe("Entry kind."))
                .attr(Attribute::string("name").required().requires_replace().describe("Entry name."))
                .attr(Attribute::string("config_json").required().describe(
                    "The entry's body as a JSON object (use `jsonencode`), without Kind and Name. \
                     Compared semantically: key order, whitespace and server-added fields never show as a diff.",
                ))
                .attr(util::takeover_attr()),
        )
    }

    async fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        if let Some(text) = config.get("config_json").as_str() {
            if let Err(e) = parse_body(text) {
                diags.attr_error(AttrPath::attr("config_json"), "Invalid config_json", e);
            }
        }
    }

    async fn plan_destroy(&self, prior: &Value, diags: &mut Diagnostics) {
        let kind = s(prior, "kind");
        check_entry_owner(&self.0, &kind, prior, diags).await;
    }

    async fn modify_plan(
        &self,
        prior: &Value,
        _: &Value,
        plan: &mut Plan,
        diags: &mut Diagnostics,
    ) {
        if let Some(kind) = plan.planned.get("kind").as_str().map(str::to_string) {
            check_entry_owner(&self.0, &kind, &plan.planned, diags).await;
        }
        // Same meaning as the stored text: keep the stored text, no diff.
        let (Some(old), Some(new)) = (
            prior.get("config_json").as_str(),
            plan.planned.get("config_json").as_str(),
        ) else {
            return;
        };
        if let (Ok(a), Ok(b)) = (parse_body(old), parse_body(new)) {
            if a == b {
                plan.planned.set("config_json", old.into());
            }
        }
    }

    async fn create(&self, planned: &Value, _: &Value, diags: &mut Diagnostics) -> Value {
        self.write(planned, diags).await
    }

    async fn read(&self, state: &Value, diags: &mut Diagnostics) -> Value {
        let (kind, name) = (s(state, "kind"), s(state, "name"));
        let Ok(found) = get_entry(&self.0, &kind, &name, diags).await else {
            return state.clone();
        };
        let Some(body) = found else {
            return Value::Null;
        };
        let mut out = state.clone();
        out.set("id", format!("{kind}/{name}").into());
        util::keep_takeover(state, &mut out);
        let same = state
            .get("config_json")
            .as_str()
            .and_then(|t| parse_body(t).ok())
            .is_some_and(|old| old == body);
        if !same {
            out.set("config_json", body.to_string().into());
        }
        out
    }

    async fn delete(&self, prior: &Value, diags: &mut Diagnostics) {
        let takeover = util::takeover(prior);
        delete_entry(
            &self.0,
            &s(prior, "kind"),
            &s(prior, "name"),
            takeover,
            diags,
        )
        .await
    }

    async fn import(&self, id: &str, diags: &mut Diagnostics) -> Value {
        let Some((kind, name)) = split_id(id, diags) else {
            return Value::Null;
        };
        Value::object([
            ("id", Value::from(id)),
            ("kind", kind.into()),
            ("name", name.into()),
        ])
    }
}

impl ConfigEntryResource {
    async fn write(&self, planned: &Value, diags: &mut Diagnostics) -> Value {
        let (kind, name) = (s(planned, "kind"), s(planned, "name"));
        let body = match parse_body(&s(planned, "config_json")) {
            Ok(b) => b,
            Err(e) => {
                diags.attr_error(AttrPath::attr("config_json"), "Invalid config_json", e);
                return Value::Null;
            }
        };
        if !put_entry(&self.0, &kind, &name, &body, util::takeover(planned), diags).await {
            return Value::Null;
        }
        let mut v = planned.clone();
        v.set("id", format!("{kind}/{name}").into());
        v
    }
}
