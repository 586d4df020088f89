//! Markdown reference pages rendered from schemas (the registry's
//! "Schema" section), so provider docs cannot drift from the code.

use crate::schema::{Attribute, Block, Nesting, Validator};
use crate::value::Type;

/// Markdown reference for a block: an "Argument Reference" style list.
pub fn render_markdown(block: &Block, heading_level: usize, out: &mut String) {
    let kind = |a: &Attribute| {
        if a.required {
            "Required"
        } else if a.optional {
            "Optional"
        } else {
            "Read-only"
        }
    };
    for a in &block.attributes {
        let mut extra = Vec::new();
        if a.write_only {
            extra.push("write-only: never stored in state".to_string());
        } else if a.sensitive {
            extra.push("sensitive".to_string());
        }
        if a.requires_replace {
            extra.push("changing it replaces the resource".to_string());
        }
        if let Some(d) = &a.default {
            extra.push(format!("default `{}`", d.to_json()));
        }
        extra.extend(a.validators.iter().filter_map(Validator::describe));
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!(" ({})", extra.join("; "))
        };
        out.push_str(&format!(
            "- `{}` ({}, {}) {}{}\n",
            a.name,
            type_name(&a.ty),
            kind(a),
            a.description,
            extra
        ));
    }
    for b in &block.blocks {
        let count = match b.nesting {
            Nesting::Single => "at most one".to_string(),
            _ if b.max_items > 0 => format!("{} to {}", b.min_items, b.max_items),
            _ if b.min_items > 0 => format!("at least {}", b.min_items),
            _ => "any number".to_string(),
        };
        out.push_str(&format!(
            "- `{}` (block, {count}) {}\n",
            b.name, b.block.description
        ));
    }
    for b in &block.blocks {
        out.push_str(&format!(
            "\n{} Nested block `{}`\n\n",
            "#".repeat(heading_level),
            b.name
        ));
        render_markdown(&b.block, heading_level + 1, out);
    }
}

fn type_name(t: &Type) -> String {
    match t {
        Type::String => "String".into(),
        Type::Number => "Number".into(),
        Type::Bool => "Bool".into(),
        Type::List(e) => format!("List of {}", type_name(e)),
        Type::Set(e) => format!("Set of {}", type_name(e)),
        Type::Map(e) => format!("Map of {}", type_name(e)),
        Type::Object(_) => "Object".into(),
    }
}
