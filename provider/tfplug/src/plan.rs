//! Plan computation shared by every resource: defaults, "known after apply"
//! for computed attributes, prior values kept where asked, and the paths
//! whose change forces replacement.

use crate::diag::AttrPath;
use crate::schema::{Block, Nesting};
use crate::value::Value;

/// The planned state and the attribute paths that force replacement.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The planned new state.
    pub planned: Value,
    /// Paths whose change replaces the resource.
    pub requires_replace: Vec<AttrPath>,
}

/// Plans `proposed` (Terraform's merge of config and prior state) against `prior`.
pub fn plan(block: &Block, prior: &Value, proposed: &Value, config: &Value) -> Plan {
    if proposed.is_null() {
        return Plan {
            planned: Value::Null,
            requires_replace: vec![],
        };
    }
    let create = prior.is_null();
    let mut replace = Vec::new();
    let mut planned = plan_block(
        block,
        prior,
        proposed,
        config,
        &AttrPath::default(),
        &mut replace,
    );
    if !create && changed(block, prior, &planned) {
        // Something the user set changed: server-computed values may change too.
        for a in &block.attributes {
            if a.computed
                && !a.use_state_for_unknown
                && a.default.is_none()
                && config.get(&a.name).is_null()
            {
                planned.set(&a.name, Value::Unknown);
            }
        }
    }
    Plan {
        planned,
        requires_replace: replace,
    }
}

/// Whether any attribute or block differs between prior and planned.
fn changed(block: &Block, prior: &Value, planned: &Value) -> bool {
    block
        .attributes
        .iter()
        .any(|a| prior.get(&a.name) != planned.get(&a.name))
        || block
            .blocks
            .iter()
            .any(|b| prior.get(&b.name) != planned.get(&b.name))
}

fn plan_block(
    block: &Block,
    prior: &Value,
    proposed: &Value,
    config: &Value,
    at: &AttrPath,
    replace: &mut Vec<AttrPath>,
) -> Value {
    let create = prior.is_null();
    let mut out = proposed.clone();
    if out.is_unknown() || out.is_null() {
        return out;
    }
    for a in &block.attributes {
        let cv = config.get(&a.name);
        let pv = proposed.get(&a.name);
        let planned = if a.write_only {
            Value::Null
        } else if a.computed && cv.is_null() {
            match &a.default {
                Some(d) => d.clone(),
                None if create => Value::Unknown,
                None => pv.clone(),
            }
        } else {
            pv.clone()
        };
        if !create && a.requires_replace && &planned != prior.get(&a.name) {
            replace.push(at.then(&a.name));
        }
        out.set(&a.name, planned);
    }
    for b in &block.blocks {
        let path = at.then(&b.name);
        let pv = proposed.get(&b.name);
        let cv = config.get(&b.name);
        let prv = prior.get(&b.name);
        let planned = match b.nesting {
            Nesting::Single => plan_block(&b.block, prv, pv, cv, &path, replace),
            Nesting::List | Nesting::Set => match pv {
                Value::List(items) => Value::List(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| {
                            // Lists match prior elements by position; set elements have
                            // no identity, so they plan as new.
                            let prior_item = match b.nesting {
                                Nesting::List => prv.items().get(i).unwrap_or(&Value::Null),
                                _ => &Value::Null,
                            };
                            let cfg_item = cv.items().get(i).unwrap_or(&Value::Null);
                            plan_block(
                                &b.block,
                                prior_item,
                                item,
                                cfg_item,
                                &path.index(i),
                                replace,
                            )
                        })
                        .collect(),
                ),
                other => other.clone(),
            },
        };
        out.set(&b.name, planned);
    }
    out
}
