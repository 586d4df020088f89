//! HCL text → JSON value, remembering where every key is.
//!
//! We walk hcl-edit's span-carrying tree ourselves instead of using hcl-rs's
//! deserializer: it gives every later error a line and column, and it lets one
//! block and repeated blocks both work (one block → object, repeats → list).

use hcl::edit::expr::{Expression, ObjectKey, UnaryOperator};
use hcl::edit::structure::{Block, Body, Structure};
use hcl::edit::template::{Element, Template};
use hcl::edit::{Number, Span};
use serde_json::{Map, Value};

use crate::raw::join;
use crate::spans::Spans;

/// A problem at a byte offset of the input.
#[derive(Debug)]
pub(crate) struct OffsetError {
    pub offset: usize,
    pub message: String,
}

fn err(offset: Option<std::ops::Range<usize>>, message: impl Into<String>) -> OffsetError {
    OffsetError {
        offset: offset.map_or(0, |r| r.start),
        message: message.into(),
    }
}

/// Parses HCL text into a JSON object and the position of each key path.
pub(crate) fn parse(text: &str) -> Result<(Value, Spans), OffsetError> {
    let body = hcl::edit::parser::parse_body(text).map_err(|e| OffsetError {
        offset: e.location().offset(),
        message: format!("syntax error: {}", e.message()),
    })?;
    let mut spans = Spans::new(text);
    let map = body_to_map(&body, "", &mut spans)?;
    Ok((Value::Object(map), spans))
}

fn body_to_map(
    body: &Body,
    path: &str,
    spans: &mut Spans,
) -> Result<Map<String, Value>, OffsetError> {
    let mut map = Map::new();
    // Blocks are gathered first: whether `x { }` becomes an object or a list
    // depends on how many `x` blocks there are.
    let mut blocks: Vec<(&str, Vec<&Block>)> = Vec::new();
    for structure in body.iter() {
        match structure {
            Structure::Attribute(attr) => {
                let key = attr.key.as_str();
                let key_path = join(path, key);
                if let Some(first) = spans.get(&key_path) {
                    return Err(err(
                        attr.key.span(),
                        format!(
                            "duplicate key `{key}` (first set on line {})",
                            first.key.line
                        ),
                    ));
                }
                spans.insert(&key_path, attr.key.span(), attr.value.span());
                let value = expr_to_value(&attr.value, &key_path, spans)?;
                map.insert(key.to_string(), value);
            }
            Structure::Block(block) => {
                let ident = block.ident.as_str();
                match blocks.iter_mut().find(|(name, _)| *name == ident) {
                    Some((_, list)) => list.push(block),
                    None => blocks.push((ident, vec![block])),
                }
            }
        }
    }
    for (ident, list) in blocks {
        let key_path = join(path, ident);
        if map.contains_key(ident) {
            return Err(err(
                list[0].ident.span(),
                format!("`{ident}` is set both as a key and as a block; use one"),
            ));
        }
        let labelled = list[0].is_labeled();
        if let Some(odd) = list.iter().find(|b| b.is_labeled() != labelled) {
            return Err(err(
                odd.ident.span(),
                format!("`{ident}` blocks must all have labels or all have none"),
            ));
        }
        let value = if labelled {
            labelled_blocks(&list, &key_path, spans)?
        } else {
            unlabelled_blocks(&list, &key_path, spans)?
        };
        map.insert(ident.to_string(), value);
    }
    Ok(map)
}

/// One block → its body as an object; repeated blocks → a list of objects.
fn unlabelled_blocks(list: &[&Block], path: &str, spans: &mut Spans) -> Result<Value, OffsetError> {
    if let [block] = list {
        spans.insert(path, block.ident.span(), block.ident.span());
        return Ok(Value::Object(body_to_map(&block.body, path, spans)?));
    }
    spans.insert(path, list[0].ident.span(), list[0].ident.span());
    let mut items = Vec::new();
    for (i, block) in list.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        spans.insert(&item_path, block.ident.span(), block.ident.span());
        items.push(Value::Object(body_to_map(&block.body, &item_path, spans)?));
    }
    Ok(Value::Array(items))
}

/// `ident "a" "b" { }` → `{"a": {"b": {...}}}`; the same labels twice → a list there.
fn labelled_blocks(list: &[&Block], path: &str, spans: &mut Spans) -> Result<Value, OffsetError> {
    spans.insert(path, list[0].ident.span(), list[0].ident.span());
    let mut groups: Vec<(Vec<&str>, Vec<&Block>)> = Vec::new();
    for block in list {
        let labels: Vec<&str> = block.labels.iter().map(|l| l.as_str()).collect();
        match groups.iter_mut().find(|(l, _)| *l == labels) {
            Some((_, blocks)) => blocks.push(block),
            None => groups.push((labels, vec![block])),
        }
    }
    let mut root = Value::Object(Map::new());
    for (labels, blocks) in groups {
        let mut leaf_path = path.to_string();
        let mut node = &mut root;
        for (depth, label) in labels.iter().enumerate() {
            leaf_path = join(&leaf_path, label);
            let label_span = blocks[0].labels[depth].span();
            if spans.get(&leaf_path).is_none() {
                spans.insert(&leaf_path, label_span.clone(), label_span.clone());
            }
            let Value::Object(map) = node else {
                return Err(err(
                    label_span,
                    "block labels nest deeper than an earlier block with the same labels",
                ));
            };
            node = map
                .entry(label.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
        }
        *node = unlabelled_blocks(&blocks, &leaf_path, spans)?;
    }
    Ok(root)
}

fn expr_to_value(expr: &Expression, path: &str, spans: &mut Spans) -> Result<Value, OffsetError> {
    Ok(match expr {
        Expression::Null(_) => Value::Null,
        Expression::Bool(b) => Value::Bool(*b.value()),
        Expression::Number(n) => number(n.value(), false),
        Expression::String(s) => Value::String(s.value().clone()),
        Expression::Array(array) => {
            let mut items = Vec::new();
            for (i, item) in array.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                spans.insert(&item_path, item.span(), item.span());
                items.push(expr_to_value(item, &item_path, spans)?);
            }
            Value::Array(items)
        }
        Expression::Object(object) => {
            let mut map = Map::new();
            for (key, value) in object.iter() {
                let name = object_key(key)?;
                let key_path = join(path, &name);
                if map.contains_key(&name) {
                    return Err(err(key.span(), format!("duplicate key `{name}`")));
                }
                spans.insert(&key_path, key.span(), value.expr().span());
                map.insert(name, expr_to_value(value.expr(), &key_path, spans)?);
            }
            Value::Object(map)
        }
        Expression::StringTemplate(t) => Value::String(literal_template(t, expr.span())?),
        Expression::HeredocTemplate(h) => {
            let mut heredoc = (**h).clone();
            heredoc.dedent();
            Value::String(literal_template(&heredoc.template, expr.span())?)
        }
        Expression::Parenthesis(p) => expr_to_value(p.inner(), path, spans)?,
        Expression::UnaryOp(op) if op.operator.value() == &UnaryOperator::Neg => {
            match &op.expr {
                Expression::Number(n) => number(n.value(), true),
                _ => return Err(err(expr.span(), "`-` works only on a number literal here")),
            }
        }
        _ => {
            return Err(err(
                expr.span(),
                "expressions (variables, functions, operators) are not supported in agent config; write a literal value",
            ))
        }
    })
}

fn number(n: &Number, negate: bool) -> Value {
    if let Some(i) = n.as_i64() {
        return Value::from(if negate { -i } else { i });
    }
    if let (Some(u), false) = (n.as_u64(), negate) {
        return Value::from(u);
    }
    let f = n.as_f64().unwrap_or(f64::NAN);
    Value::from(if negate { -f } else { f })
}

fn object_key(key: &ObjectKey) -> Result<String, OffsetError> {
    match key {
        ObjectKey::Ident(ident) => Ok(ident.as_str().to_string()),
        ObjectKey::Expression(Expression::String(s)) => Ok(s.value().clone()),
        ObjectKey::Expression(e) => Err(err(e.span(), "object keys must be names or strings")),
    }
}

/// A template with only literal text (no `${}` or `%{}`), as a string.
fn literal_template(
    template: &Template,
    span: Option<std::ops::Range<usize>>,
) -> Result<String, OffsetError> {
    let mut out = String::new();
    for element in template.iter() {
        match element {
            Element::Literal(text) => out.push_str(text.value()),
            _ => {
                return Err(err(
                    span,
                    "`${...}` and `%{...}` templates are not supported in agent config; write the value literally",
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn value(text: &str) -> Value {
        parse(text).unwrap().0
    }

    #[test]
    fn blocks_attributes_and_negative_numbers() {
        let v = value(
            r#"
datacenter = "dc1"
ports {
  http = -1
  dns  = 8600
}
retry_join = ["a", "b"]
"#,
        );
        assert_eq!(
            v,
            json!({"datacenter": "dc1", "ports": {"http": -1, "dns": 8600}, "retry_join": ["a", "b"]})
        );
    }

    #[test]
    fn repeated_blocks_become_lists() {
        let v = value(
            r#"
config_entries {
  bootstrap { kind = "proxy-defaults" }
  bootstrap { kind = "service-defaults" }
}
"#,
        );
        assert_eq!(
            v,
            json!({"config_entries": {"bootstrap": [{"kind": "proxy-defaults"}, {"kind": "service-defaults"}]}})
        );
    }

    #[test]
    fn labelled_blocks_become_maps() {
        let v = value("service \"web\" { port = 80 }\nservice \"db\" { port = 5432 }\n");
        assert_eq!(
            v,
            json!({"service": {"web": {"port": 80}, "db": {"port": 5432}}})
        );
    }

    #[test]
    fn heredoc_and_object_attribute() {
        let v = value("a = <<-EOT\n  hi\n  EOT\nb = { c = true, \"d\" = null }\n");
        assert_eq!(v, json!({"a": "hi\n", "b": {"c": true, "d": null}}));
    }

    #[test]
    fn spans_point_at_keys_and_values() {
        let (_, spans) = parse("a = 1\nports {\n  http = \"x\"\n}\n").unwrap();
        let http = spans.get("ports.http").unwrap();
        assert_eq!((http.key.line, http.key.col), (3, 3));
        assert_eq!((http.value.line, http.value.col), (3, 10));
    }

    #[test]
    fn interpolation_and_duplicates_are_errors() {
        let e = parse("a = \"${var.x}\"\n").unwrap_err();
        assert!(e.message.contains("templates"), "{}", e.message);
        let e = parse("a = 1\nb = { c = 1, c = 2 }\n").unwrap_err();
        assert!(e.message.contains("redefined object key"), "{}", e.message);
        let e = parse("ports = {}\nports {\n}\n").unwrap_err();
        assert!(
            e.message.contains("both as a key and as a block"),
            "{}",
            e.message
        );
    }
}
