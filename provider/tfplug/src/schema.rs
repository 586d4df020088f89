//! Schemas: attributes and nested blocks with flags, defaults, validators and
//! plan modifiers; their protocol encoding and their implied value type.

use std::sync::Arc;

use crate::diag::{AttrPath, Diagnostics};
use crate::proto::tfplugin6 as pb;
use crate::value::{Type, Value};

/// A custom check: `Err(detail)` fails.
pub type CheckFn = Arc<dyn Fn(&Value) -> Result<(), String> + Send + Sync>;

/// Checks a known, non-null attribute value; returns the problem if any.
#[derive(Clone)]
pub enum Validator {
    /// The string must be one of these.
    OneOf(Vec<String>),
    /// The string must match this regex (anchored by the caller); the text says what is expected.
    Regex(regex::Regex, String),
    /// The number must lie in `[min, max]`.
    Range(f64, f64),
    /// Any check: `Err(detail)` fails.
    Custom(CheckFn),
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Validator::OneOf(v) => write!(f, "OneOf({v:?})"),
            Validator::Regex(r, _) => write!(f, "Regex({r})"),
            Validator::Range(a, b) => write!(f, "Range({a}, {b})"),
            Validator::Custom(_) => write!(f, "Custom"),
        }
    }
}

impl Validator {
    /// Regex validator; `expected` describes valid values for the message.
    pub fn regex(pattern: &str, expected: &str) -> Validator {
        Validator::Regex(
            regex::Regex::new(pattern).expect("valid regex"),
            expected.to_string(),
        )
    }

    fn check(&self, v: &Value) -> Result<(), String> {
        match (self, v) {
            (Validator::OneOf(options), Value::String(s)) if !options.contains(s) => {
                Err(format!("got {s:?}; expected one of {}", quoted(options)))
            }
            (Validator::Regex(re, expected), Value::String(s)) if !re.is_match(s) => {
                Err(format!("got {s:?}; expected {expected}"))
            }
            (Validator::Range(min, max), Value::Number(n)) if n < min || n > max => {
                Err(format!("got {n}; expected a value between {min} and {max}"))
            }
            (Validator::Custom(f), v) => f(v),
            _ => Ok(()),
        }
    }

    pub(crate) fn describe(&self) -> Option<String> {
        match self {
            Validator::OneOf(o) => Some(format!("one of {}", quoted(o))),
            Validator::Range(a, b) => Some(format!("between {a} and {b}")),
            _ => None,
        }
    }
}

fn quoted(v: &[String]) -> String {
    v.iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One attribute of a block.
#[derive(Debug, Clone)]
pub struct Attribute {
    /// Name in configuration.
    pub name: String,
    /// Value type.
    pub ty: Type,
    /// Markdown description.
    pub description: String,
    /// Must be set in configuration.
    pub required: bool,
    /// May be set in configuration.
    pub optional: bool,
    /// The provider may set it.
    pub computed: bool,
    /// Hidden in plan output.
    pub sensitive: bool,
    /// Sent in configuration only, never stored in plan or state.
    pub write_only: bool,
    /// Planned when configuration leaves it null (implies computed).
    pub default: Option<Value>,
    /// Checks run at validation.
    pub validators: Vec<Validator>,
    /// A change replaces the resource.
    pub requires_replace: bool,
    /// Keep the prior value in plans instead of "known after apply".
    pub use_state_for_unknown: bool,
}

impl Attribute {
    /// An attribute of type `ty`; optional until said otherwise.
    pub fn new(name: &str, ty: Type) -> Attribute {
        Attribute {
            name: name.to_string(),
            ty,
            description: String::new(),
            required: false,
            optional: true,
            computed: false,
            sensitive: false,
            write_only: false,
            default: None,
            validators: Vec::new(),
            requires_replace: false,
            use_state_for_unknown: false,
        }
    }
    /// A string attribute.
    pub fn string(name: &str) -> Attribute {
        Attribute::new(name, Type::String)
    }
    /// A number attribute.
    pub fn number(name: &str) -> Attribute {
        Attribute::new(name, Type::Number)
    }
    /// A bool attribute.
    pub fn bool(name: &str) -> Attribute {
        Attribute::new(name, Type::Bool)
    }
    /// Must be set.
    pub fn required(mut self) -> Self {
        self.required = true;
        self.optional = false;
        self
    }
    /// Set only by the provider.
    pub fn computed(mut self) -> Self {
        self.computed = true;
        self.optional = false;
        self.required = false;
        self
    }
    /// May be set, else the provider fills it.
    pub fn optional_computed(mut self) -> Self {
        self.computed = true;
        self.optional = true;
        self
    }
    /// Hidden in output.
    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }
    /// Never stored in state (Terraform 1.11+); the provider sees it at apply.
    pub fn write_only(mut self) -> Self {
        self.write_only = true;
        self.sensitive = true;
        self
    }
    /// Its description (markdown).
    pub fn describe(mut self, d: &str) -> Self {
        self.description = d.to_string();
        self
    }
    /// Default when not configured (makes it optional+computed).
    pub fn default(mut self, v: impl Into<Value>) -> Self {
        self.default = Some(v.into());
        self.optional_computed()
    }
    /// Adds a validator.
    pub fn validate(mut self, v: Validator) -> Self {
        self.validators.push(v);
        self
    }
    /// A change forces replacement.
    pub fn requires_replace(mut self) -> Self {
        self.requires_replace = true;
        self
    }
    /// Plans keep the prior value.
    pub fn use_state_for_unknown(mut self) -> Self {
        self.use_state_for_unknown = true;
        self
    }

    fn to_proto(&self) -> pb::schema::Attribute {
        pb::schema::Attribute {
            name: self.name.clone(),
            r#type: self.ty.to_json().to_string().into_bytes(),
            description: self.description.clone(),
            required: self.required,
            optional: self.optional,
            computed: self.computed,
            sensitive: self.sensitive,
            write_only: self.write_only,
            description_kind: pb::StringKind::Markdown as i32,
            ..Default::default()
        }
    }
}

/// How a nested block repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nesting {
    /// At most one; null when absent.
    Single,
    /// An ordered list of blocks.
    List,
    /// An unordered set of blocks.
    Set,
}

/// A nested block type.
#[derive(Debug, Clone)]
pub struct NestedBlock {
    /// Block type name.
    pub name: String,
    /// Its contents.
    pub block: Block,
    /// How it repeats.
    pub nesting: Nesting,
    /// At least this many.
    pub min_items: i64,
    /// At most this many (0: unlimited).
    pub max_items: i64,
}

impl NestedBlock {
    /// A repeated block.
    pub fn list(name: &str, block: Block) -> NestedBlock {
        NestedBlock {
            name: name.to_string(),
            block,
            nesting: Nesting::List,
            min_items: 0,
            max_items: 0,
        }
    }
    /// A set of blocks.
    pub fn set(name: &str, block: Block) -> NestedBlock {
        NestedBlock {
            nesting: Nesting::Set,
            ..NestedBlock::list(name, block)
        }
    }
    /// At most one block.
    pub fn single(name: &str, block: Block) -> NestedBlock {
        NestedBlock {
            nesting: Nesting::Single,
            ..NestedBlock::list(name, block)
        }
    }
    /// Bounds on how many.
    pub fn items(mut self, min: i64, max: i64) -> Self {
        self.min_items = min;
        self.max_items = max;
        self
    }

    /// The value type of this block's attribute in its parent object.
    pub fn ty(&self) -> Type {
        let obj = self.block.ty();
        match self.nesting {
            Nesting::Single => obj,
            Nesting::List => Type::list(obj),
            Nesting::Set => Type::set(obj),
        }
    }

    /// The block values present (Single: zero or one).
    pub fn instances<'a>(&self, v: &'a Value) -> Vec<&'a Value> {
        match self.nesting {
            Nesting::Single if v.is_null() || v.is_unknown() => vec![],
            Nesting::Single => vec![v],
            _ => v.items().iter().collect(),
        }
    }
}

/// A block: attributes and nested blocks.
#[derive(Debug, Clone, Default)]
pub struct Block {
    /// Attributes.
    pub attributes: Vec<Attribute>,
    /// Nested block types.
    pub blocks: Vec<NestedBlock>,
    /// Markdown description.
    pub description: String,
}

impl Block {
    /// An empty block with a description.
    pub fn new(description: &str) -> Block {
        Block {
            description: description.to_string(),
            ..Default::default()
        }
    }
    /// Adds an attribute.
    pub fn attr(mut self, a: Attribute) -> Self {
        self.attributes.push(a);
        self
    }
    /// Adds a nested block type.
    pub fn block(mut self, b: NestedBlock) -> Self {
        self.blocks.push(b);
        self
    }

    /// The object type a value of this block has.
    pub fn ty(&self) -> Type {
        Type::Object(
            self.attributes
                .iter()
                .map(|a| (a.name.clone(), a.ty.clone()))
                .chain(self.blocks.iter().map(|b| (b.name.clone(), b.ty())))
                .collect(),
        )
    }

    /// Runs validators over a configuration value, with paths under `at`.
    pub fn validate(&self, v: &Value, at: &AttrPath, diags: &mut Diagnostics) {
        for a in &self.attributes {
            let av = v.get(&a.name);
            if av.is_null() || av.has_unknown() {
                continue;
            }
            for check in &a.validators {
                if let Err(detail) = check.check(av) {
                    diags.attr_error(
                        at.then(&a.name),
                        format!("Invalid value for {}", a.name),
                        detail,
                    );
                }
            }
        }
        for b in &self.blocks {
            let bv = v.get(&b.name);
            for (i, inst) in b.instances(bv).into_iter().enumerate() {
                let p = if b.nesting == Nesting::Single {
                    at.then(&b.name)
                } else {
                    at.then(&b.name).index(i)
                };
                b.block.validate(inst, &p, diags);
            }
        }
    }

    pub(crate) fn to_proto(&self) -> pb::schema::Block {
        pb::schema::Block {
            attributes: self.attributes.iter().map(Attribute::to_proto).collect(),
            block_types: self
                .blocks
                .iter()
                .map(|b| pb::schema::NestedBlock {
                    type_name: b.name.clone(),
                    block: Some(b.block.to_proto()),
                    nesting: match b.nesting {
                        Nesting::Single => pb::schema::nested_block::NestingMode::Single,
                        Nesting::List => pb::schema::nested_block::NestingMode::List,
                        Nesting::Set => pb::schema::nested_block::NestingMode::Set,
                    } as i32,
                    min_items: b.min_items,
                    max_items: b.max_items,
                })
                .collect(),
            description: self.description.clone(),
            description_kind: pb::StringKind::Markdown as i32,
            ..Default::default()
        }
    }
}

/// A versioned schema of a provider, resource or data source.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    /// Bumped when stored state needs an upgrade.
    pub version: i64,
    /// The top-level block.
    pub block: Block,
}

impl Schema {
    /// Version 0 schema of `block`.
    pub fn new(block: Block) -> Schema {
        Schema { version: 0, block }
    }
    pub(crate) fn to_proto(&self) -> pb::Schema {
        pb::Schema {
            version: self.version,
            block: Some(self.block.to_proto()),
        }
    }
}
