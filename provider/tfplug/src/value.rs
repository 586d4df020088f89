//! Terraform values and their types, with the msgpack wire codec
//! (`DynamicValue.msgpack`) and the JSON form used by stored state.
//!
//! Unknown values travel as a msgpack extension; every extension type is read
//! as unknown, because newer cores send refined unknowns as type 12.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::Error;

/// A Terraform type constraint (cty type).
#[derive(Debug, Clone, PartialEq)]
pub enum Type {
    /// `string`
    String,
    /// `number`
    Number,
    /// `bool`
    Bool,
    /// `list(T)`
    List(Box<Type>),
    /// `set(T)`
    Set(Box<Type>),
    /// `map(T)`
    Map(Box<Type>),
    /// `object({...})`
    Object(BTreeMap<String, Type>),
}

impl Type {
    /// `list(T)`.
    pub fn list(t: Type) -> Type {
        Type::List(Box::new(t))
    }
    /// `set(T)`.
    pub fn set(t: Type) -> Type {
        Type::Set(Box::new(t))
    }
    /// `map(T)`.
    pub fn map(t: Type) -> Type {
        Type::Map(Box::new(t))
    }
    /// `object({...})` from name/type pairs.
    pub fn object<'a>(attrs: impl IntoIterator<Item = (&'a str, Type)>) -> Type {
        Type::Object(attrs.into_iter().map(|(k, t)| (k.to_string(), t)).collect())
    }

    /// The JSON type expression Terraform expects in `Schema.Attribute.type`.
    pub fn to_json(&self) -> Json {
        match self {
            Type::String => Json::from("string"),
            Type::Number => Json::from("number"),
            Type::Bool => Json::from("bool"),
            Type::List(t) => Json::Array(vec!["list".into(), t.to_json()]),
            Type::Set(t) => Json::Array(vec!["set".into(), t.to_json()]),
            Type::Map(t) => Json::Array(vec!["map".into(), t.to_json()]),
            Type::Object(attrs) => Json::Array(vec![
                "object".into(),
                Json::Object(
                    attrs
                        .iter()
                        .map(|(k, t)| (k.clone(), t.to_json()))
                        .collect(),
                ),
            ]),
        }
    }
}

/// A Terraform value; `Unknown` is "known after apply".
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// No value.
    #[default]
    Null,
    /// Not known until apply.
    Unknown,
    /// A bool.
    Bool(bool),
    /// A number (Terraform's are arbitrary precision; f64 is enough here).
    Number(f64),
    /// A string.
    String(String),
    /// A list, set or tuple, in order.
    List(Vec<Value>),
    /// A map or object.
    Map(BTreeMap<String, Value>),
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}
impl From<f64> for Value {
    fn from(n: f64) -> Value {
        Value::Number(n)
    }
}
impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Number(n as f64)
    }
}

impl Value {
    /// An object from name/value pairs.
    pub fn object<K: Into<String>>(attrs: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Map(attrs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
    /// Whether this is null.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
    /// Whether this value is unknown (not whether it contains one).
    pub fn is_unknown(&self) -> bool {
        matches!(self, Value::Unknown)
    }
    /// Whether an unknown appears anywhere inside.
    pub fn has_unknown(&self) -> bool {
        match self {
            Value::Unknown => true,
            Value::List(v) => v.iter().any(Value::has_unknown),
            Value::Map(m) => m.values().any(Value::has_unknown),
            _ => false,
        }
    }
    /// Attribute `name` of an object (Null when absent or not an object).
    pub fn get(&self, name: &str) -> &Value {
        static NULL: Value = Value::Null;
        match self {
            Value::Map(m) => m.get(name).unwrap_or(&NULL),
            _ => &NULL,
        }
    }
    /// Mutable attribute `name` of an object, inserted as Null if missing.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        match self {
            Value::Map(m) => Some(m.entry(name.to_string()).or_default()),
            _ => None,
        }
    }
    /// Sets attribute `name` of an object.
    pub fn set(&mut self, name: &str, v: Value) {
        if let Value::Map(m) = self {
            m.insert(name.to_string(), v);
        }
    }
    /// The string inside, if known.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    /// The number inside, if known.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }
    /// The number as an integer, if known and whole.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_f64().filter(|n| n.fract() == 0.0).map(|n| n as i64)
    }
    /// The bool inside, if known.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
    /// Elements of a list/set (empty for null).
    pub fn items(&self) -> &[Value] {
        match self {
            Value::List(v) => v,
            _ => &[],
        }
    }
    /// Entries of a map (None for null or non-maps).
    pub fn entries(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    // === msgpack ===

    /// Encodes as msgpack, typed by `ty` (objects get every attribute, as null if missing).
    pub fn to_msgpack(&self, ty: &Type) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        encode(&mut out, self, ty);
        out
    }

    /// Decodes msgpack typed by `ty`.
    pub fn from_msgpack(bytes: &[u8], ty: &Type) -> Result<Value, Error> {
        let mut r = crate::msgpack::Reader::new(bytes);
        let raw = r.read()?;
        typed(raw, ty, &mut Vec::new())
    }

    // === JSON ===

    /// Decodes Terraform's JSON state form, typed by `ty`.
    pub fn from_json(json: &Json, ty: &Type) -> Result<Value, Error> {
        typed(crate::msgpack::Raw::from_json(json), ty, &mut Vec::new())
    }

    /// Plain JSON for a known value (unknowns become null).
    pub fn to_json(&self) -> Json {
        match self {
            Value::Null | Value::Unknown => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => number_json(*n),
            Value::String(s) => Json::String(s.clone()),
            Value::List(v) => Json::Array(v.iter().map(Value::to_json).collect()),
            Value::Map(m) => {
                Json::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }
}

fn number_json(n: f64) -> Json {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Json::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Json::Null, Json::Number)
    }
}

fn encode(out: &mut Vec<u8>, v: &Value, ty: &Type) {
    use rmp::encode as e;
    // Writes to a Vec cannot fail.
    match (v, ty) {
        (Value::Null, _) => e::write_nil(out).unwrap(),
        (Value::Unknown, _) => {
            e::write_ext_meta(out, 1, 0).unwrap();
            out.push(0);
        }
        (Value::Bool(b), _) => e::write_bool(out, *b).unwrap(),
        (Value::Number(n), _) => {
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                e::write_sint(out, *n as i64).unwrap();
            } else {
                e::write_f64(out, *n).unwrap();
            }
        }
        (Value::String(s), _) => e::write_str(out, s).unwrap(),
        (Value::List(items), Type::List(t) | Type::Set(t)) => {
            e::write_array_len(out, items.len() as u32).unwrap();
            for i in items {
                encode(out, i, t);
            }
        }
        (Value::Map(m), Type::Map(t)) => {
            e::write_map_len(out, m.len() as u32).unwrap();
            for (k, v) in m {
                e::write_str(out, k).unwrap();
                encode(out, v, t);
            }
        }
        (Value::Map(m), Type::Object(attrs)) => {
            e::write_map_len(out, attrs.len() as u32).unwrap();
            for (k, t) in attrs {
                e::write_str(out, k).unwrap();
                encode(out, m.get(k).unwrap_or(&Value::Null), t);
            }
        }
        // A shape that does not fit its type is a provider bug; null keeps the wire valid.
        _ => e::write_nil(out).unwrap(),
    }
}

fn typed(raw: crate::msgpack::Raw, ty: &Type, path: &mut Vec<String>) -> Result<Value, Error> {
    use crate::msgpack::Raw;
    let mismatch = |path: &Vec<String>, what: &str| Error::Decode {
        path: path.join("."),
        reason: format!("expected {}, got {what}", ty.to_json()),
    };
    Ok(match (raw, ty) {
        (Raw::Nil, _) => Value::Null,
        (Raw::Ext, _) => Value::Unknown,
        (Raw::Bool(b), Type::Bool) => Value::Bool(b),
        (Raw::Str(s), Type::Bool) => match s.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(mismatch(path, "string")),
        },
        (Raw::Int(n), Type::Number) => Value::Number(n as f64),
        (Raw::Float(n), Type::Number) => Value::Number(n),
        (Raw::Str(s), Type::Number) => {
            Value::Number(s.parse().map_err(|_| mismatch(path, "string"))?)
        }
        (Raw::Str(s), Type::String) => Value::String(s),
        (Raw::Int(n), Type::String) => Value::String(n.to_string()),
        (Raw::Bool(b), Type::String) => Value::String(b.to_string()),
        (Raw::Array(items), Type::List(t) | Type::Set(t)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                path.push(i.to_string());
                out.push(typed(item, t, path)?);
                path.pop();
            }
            Value::List(out)
        }
        (Raw::Map(entries), Type::Map(t)) => {
            let mut out = BTreeMap::new();
            for (k, v) in entries {
                path.push(k.clone());
                let v = typed(v, t, path)?;
                path.pop();
                out.insert(k, v);
            }
            Value::Map(out)
        }
        (Raw::Map(entries), Type::Object(attrs)) => {
            let mut entries: BTreeMap<String, Raw> = entries.into_iter().collect();
            let mut out = BTreeMap::new();
            for (k, t) in attrs {
                path.push(k.clone());
                let v = match entries.remove(k) {
                    Some(raw) => typed(raw, t, path)?,
                    None => Value::Null,
                };
                path.pop();
                out.insert(k.clone(), v);
            }
            Value::Map(out)
        }
        (other, _) => return Err(mismatch(path, other.kind())),
    })
}
