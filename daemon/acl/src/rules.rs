//! Parsing policy rules:
//!
//! ```hcl
//! key_prefix "app/" { policy = "write" }
//! service "web" { policy = "read" intentions = "write" }
//! operator = "read"
//! ```

use std::collections::BTreeMap;

use hcl::edit::expr::Expression;
use hcl::edit::structure::{Body, Structure};
use hcl::edit::Span;

use crate::{Access, Global, Resource};

/// A rule text that cannot be used, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rules:{line}:{column}: {message}")]
pub struct RulesError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// The grants of one policy (or several merged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    exact: BTreeMap<(Resource, String), Access>,
    prefix: BTreeMap<(Resource, String), Access>,
    globals: BTreeMap<Global, Access>,
}

const GLOBALS: [(&str, Global); 4] = [
    ("operator", Global::Operator),
    ("acl", Global::Acl),
    ("keyring", Global::Keyring),
    ("mesh", Global::Mesh),
];

const RESOURCES: [(&str, Resource); 7] = [
    ("key", Resource::Key),
    ("service", Resource::Service),
    ("node", Resource::Node),
    ("agent", Resource::Agent),
    ("session", Resource::Session),
    ("query", Resource::Query),
    ("event", Resource::Event),
];

/// Parse a policy's rules. Every error names its line and column.
pub fn parse_rules(text: &str) -> Result<Rules, RulesError> {
    if text.trim_start().starts_with('{') {
        // JSON rules, as Consul's HCL 1 parser takes them (and clients
        // such as python-consul send): the same rules, written as HCL.
        return parse_rules(&json_rules_to_hcl(text)?);
    }
    let at = |offset: usize, message: String| {
        // Parser offsets may fall inside a multi-byte character.
        let before = &text[..text.floor_char_boundary(offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        RulesError {
            line,
            column,
            message,
        }
    };
    let start = |span: Option<std::ops::Range<usize>>| span.map_or(0, |r| r.start);
    let body: Body = hcl::edit::parser::parse_body(text).map_err(|e| {
        at(
            e.location().offset(),
            format!("syntax error: {}", e.message()),
        )
    })?;
    let mut rules = Rules::default();
    for structure in body.iter() {
        match structure {
            Structure::Attribute(attr) => {
                let key = attr.key.as_str();
                let Some((_, global)) = GLOBALS.iter().find(|(n, _)| *n == key) else {
                    return Err(at(
                        start(attr.key.span()),
                        format!("unknown permission `{key}`{}", suggest(key)),
                    ));
                };
                let access = access_of(&attr.value)
                    .map_err(|m| at(start(attr.value.span()), format!("{key}: {m}")))?;
                rules.grant_global(*global, access);
            }
            Structure::Block(block) => {
                let ident = block.ident.as_str();
                let (kind, is_prefix) = match ident.strip_suffix("_prefix") {
                    Some(base) => (base, true),
                    None => (ident, false),
                };
                let Some((_, resource)) = RESOURCES.iter().find(|(n, _)| *n == kind) else {
                    return Err(at(
                        start(block.ident.span()),
                        format!("unknown resource `{ident}`{}", suggest(ident)),
                    ));
                };
                let [label] = block.labels.as_slice() else {
                    return Err(at(
                        start(block.ident.span()),
                        format!("`{ident}` takes exactly one name, e.g. {ident} \"web\" {{ policy = \"read\" }}"),
                    ));
                };
                let name = label.as_str().to_string();
                let mut policy = None;
                let mut intentions = None;
                for inner in block.body.iter() {
                    let Structure::Attribute(attr) = inner else {
                        return Err(at(
                            start(inner.span()),
                            format!("`{ident} {name:?}` takes only attributes"),
                        ));
                    };
                    let access = access_of(&attr.value).map_err(|m| {
                        at(start(attr.value.span()), format!("{ident} {name:?}: {m}"))
                    })?;
                    match attr.key.as_str() {
                        "policy" => policy = Some(access),
                        "intentions" if *resource == Resource::Service => {
                            if access == Access::List {
                                return Err(at(
                                    start(attr.value.span()),
                                    "intentions: use \"read\", \"write\" or \"deny\"".into(),
                                ));
                            }
                            intentions = Some(access)
                        }
                        other => {
                            return Err(at(
                                start(attr.key.span()),
                                format!(
                                    "`{ident} {name:?}` has no field `{other}` (fields: policy{})",
                                    if *resource == Resource::Service {
                                        ", intentions"
                                    } else {
                                        ""
                                    }
                                ),
                            ))
                        }
                    }
                }
                let Some(policy) = policy else {
                    return Err(at(
                        start(block.ident.span()),
                        format!(
                            "`{ident} {name:?}` needs policy = \"read\", \"write\" or \"deny\""
                        ),
                    ));
                };
                rules.grant(*resource, &name, is_prefix, policy);
                if let Some(i) = intentions {
                    rules.grant(Resource::Intention, &name, is_prefix, i);
                }
            }
        }
    }
    Ok(rules)
}

fn access_of(expr: &Expression) -> Result<Access, String> {
    let Expression::String(s) = expr else {
        return Err("expected a quoted string: \"read\", \"write\" or \"deny\"".into());
    };
    match s.as_str() {
        "read" => Ok(Access::Read),
        "list" => Ok(Access::List),
        "write" => Ok(Access::Write),
        "deny" => Ok(Access::Deny),
        other => Err(format!(
            "{other:?} is not an access level: use \"read\", \"list\", \"write\" or \"deny\""
        )),
    }
}

fn suggest(word: &str) -> String {
    let known = GLOBALS.iter().map(|(n, _)| n.to_string()).chain(
        RESOURCES
            .iter()
            .flat_map(|(n, _)| [n.to_string(), format!("{n}_prefix")]),
    );
    let close = known
        .map(|k| (strsim::levenshtein(word, &k), k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d);
    close.map_or(String::new(), |(_, k)| format!("; did you mean `{k}`?"))
}

impl Rules {
    fn grant(&mut self, resource: Resource, name: &str, prefix: bool, access: Access) {
        let table = if prefix {
            &mut self.prefix
        } else {
            &mut self.exact
        };
        let slot = table.entry((resource, name.to_string())).or_insert(access);
        *slot = slot.merge(access);
    }

    fn grant_global(&mut self, global: Global, access: Access) {
        let slot = self.globals.entry(global).or_insert(access);
        *slot = slot.merge(access);
    }

    pub(crate) fn merge(&mut self, other: &Rules) {
        for ((r, n), a) in &other.exact {
            self.grant(*r, n, false, *a);
        }
        for ((r, n), a) in &other.prefix {
            self.grant(*r, n, true, *a);
        }
        for (g, a) in &other.globals {
            self.grant_global(*g, *a);
        }
    }

    pub(crate) fn global(&self, global: Global) -> Option<Access> {
        self.globals.get(&global).copied()
    }

    /// Exact rule, else the longest prefix rule that matches.
    pub(crate) fn lookup(&self, resource: Resource, name: &str) -> Option<Access> {
        if let Some(a) = self.exact.get(&(resource, name.to_string())) {
            return Some(*a);
        }
        self.prefix
            .iter()
            .filter(|((r, p), _)| *r == resource && name.starts_with(p.as_str()))
            .max_by_key(|((_, p), _)| p.len())
            .map(|(_, a)| *a)
    }

    /// Intentions without their own rule: read follows the service rule
    /// (Consul grants intention read with service read); never write.
    pub(crate) fn intention_fallback(&self, name: &str, default: Access) -> Access {
        match self.lookup(Resource::Service, name) {
            Some(Access::Deny) => Access::Deny,
            Some(_) => Access::Read,
            None => default,
        }
    }

    /// Every grant on names strictly beneath `prefix`.
    pub(crate) fn beneath<'a>(
        &'a self,
        resource: Resource,
        prefix: &'a str,
    ) -> impl Iterator<Item = Access> + 'a {
        self.exact
            .iter()
            .chain(self.prefix.iter())
            .filter(move |((r, n), _)| {
                *r == resource && n.len() > prefix.len() && n.starts_with(prefix)
            })
            .map(|(_, a)| *a)
    }
}

/// JSON rules as HCL text: `"operator": "read"` becomes an attribute,
/// `"key_prefix": {"app/": {"policy": "write"}}` (or a list of such
/// objects) becomes labelled blocks. The HCL parser then checks them.
fn json_rules_to_hcl(text: &str) -> Result<String, RulesError> {
    use serde_json::Value;
    let err = |line: usize, column: usize, message: String| RulesError {
        line,
        column,
        message,
    };
    let value: Value = serde_json::from_str(text)
        .map_err(|e| err(e.line(), e.column(), format!("JSON rules: {e}")))?;
    let Value::Object(top) = value else {
        return Err(err(1, 1, "JSON rules: an object".into()));
    };
    let quote = |s: &str| serde_json::to_string(s).expect("a string encodes");
    // Keys become HCL names unquoted: only identifiers pass.
    let ident = |k: &str| {
        if !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            Ok(())
        } else {
            Err(err(1, 1, format!("JSON rules: {k:?} is not a rule name")))
        }
    };
    let mut out = String::new();
    for (kind, v) in &top {
        ident(kind)?;
        let labelled: Vec<&serde_json::Map<String, Value>> = match v {
            Value::String(s) => {
                out.push_str(&format!("{kind} = {}\n", quote(s)));
                continue;
            }
            Value::Object(m) => vec![m],
            Value::Array(items) => items.iter().filter_map(Value::as_object).collect(),
            _ => {
                return Err(err(
                    1,
                    1,
                    format!("JSON rules: {kind:?} must be a string or an object"),
                ))
            }
        };
        for map in labelled {
            for (name, body) in map {
                let Value::Object(fields) = body else {
                    return Err(err(
                        1,
                        1,
                        format!("JSON rules: {kind} {name:?} must be an object"),
                    ));
                };
                out.push_str(&format!("{kind} {} {{\n", quote(name)));
                for (field, fv) in fields {
                    ident(field)?;
                    let Value::String(fv) = fv else {
                        return Err(err(
                            1,
                            1,
                            format!("JSON rules: {kind} {name:?}: {field} must be a string"),
                        ));
                    };
                    out.push_str(&format!("  {field} = {}\n", quote(fv)));
                }
                out.push_str("}\n");
            }
        }
    }
    Ok(out)
}
