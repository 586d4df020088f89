//! Unit tests: msgpack round trips with unknowns and nulls, schema encoding,
//! the generic plan, validators.

use crate::schema::{Attribute, Block, NestedBlock, Validator};
use crate::{plan, AttrPath, Diagnostics, Type, Value};

fn block() -> Block {
    Block::new("test")
        .attr(Attribute::string("id").computed().use_state_for_unknown())
        .attr(Attribute::string("name").required().requires_replace())
        .attr(Attribute::number("port").default(0i64))
        .attr(
            Attribute::string("action")
                .validate(Validator::OneOf(vec!["allow".into(), "deny".into()])),
        )
        .attr(Attribute::string("index").computed())
        .attr(Attribute::new("tags", Type::list(Type::String)))
        .attr(Attribute::new("meta", Type::map(Type::String)))
        .block(NestedBlock::list(
            "listener",
            Block::new("l")
                .attr(Attribute::number("port").required())
                .attr(Attribute::string("protocol").default("tcp")),
        ))
}

fn obj(pairs: &[(&str, Value)]) -> Value {
    let mut v = Value::object(block_nulls());
    for (k, x) in pairs {
        v.set(k, x.clone());
    }
    v
}

fn block_nulls() -> Vec<(String, Value)> {
    ["id", "name", "port", "action", "index", "tags", "meta"]
        .iter()
        .map(|k| (k.to_string(), Value::Null))
        .chain([("listener".to_string(), Value::List(vec![]))])
        .collect()
}

#[test]
fn msgpack_round_trip_keeps_unknowns_nulls_and_nesting() {
    let ty = block().ty();
    let v = obj(&[
        ("id", Value::Unknown),
        ("name", "web".into()),
        ("port", 8080i64.into()),
        ("tags", Value::List(vec!["a".into(), Value::Unknown])),
        ("meta", Value::object([("k", Value::from("v"))])),
        (
            "listener",
            Value::List(vec![Value::object([
                ("port", Value::from(1.5)),
                ("protocol", Value::Null),
            ])]),
        ),
    ]);
    let bytes = v.to_msgpack(&ty);
    assert_eq!(Value::from_msgpack(&bytes, &ty).unwrap(), v);
    // Unknown is the extension d4 00 00, as Terraform writes it.
    assert_eq!(Value::Unknown.to_msgpack(&Type::String), vec![0xd4, 0, 0]);
}

#[test]
fn any_extension_is_unknown_and_numbers_may_be_strings() {
    // fixext 2 of type 12: a refined unknown from newer cores.
    assert_eq!(
        Value::from_msgpack(&[0xd5, 12, 1, 2], &Type::String).unwrap(),
        Value::Unknown
    );
    let s = Value::String("12345678901".into()).to_msgpack(&Type::String);
    assert_eq!(
        Value::from_msgpack(&s, &Type::Number).unwrap(),
        Value::Number(12345678901.0)
    );
    assert!(Value::from_msgpack(&[0xc3], &Type::Number).is_err());
}

#[test]
fn json_state_decodes_per_schema() {
    let json = serde_json::json!({"id": "x", "name": "web", "port": 80, "listener": [{"port": 1}]});
    let v = Value::from_json(&json, &block().ty()).unwrap();
    assert_eq!(v.get("port"), &Value::Number(80.0));
    assert_eq!(v.get("action"), &Value::Null);
    assert_eq!(v.get("listener").items()[0].get("protocol"), &Value::Null);
}

#[test]
fn schema_encodes_types_as_json_and_blocks_as_nested() {
    let pb = crate::Schema::new(block()).to_proto();
    let b = pb.block.unwrap();
    let tags = b.attributes.iter().find(|a| a.name == "tags").unwrap();
    assert_eq!(tags.r#type, br#"["list","string"]"#);
    let port = b.attributes.iter().find(|a| a.name == "port").unwrap();
    assert!(port.optional && port.computed);
    assert_eq!(b.block_types[0].type_name, "listener");
    assert_eq!(b.block_types[0].nesting, 2);
}

#[test]
fn create_plan_fills_defaults_and_unknowns() {
    let config = obj(&[
        ("name", "web".into()),
        (
            "listener",
            Value::List(vec![Value::object([
                ("port", Value::from(1i64)),
                ("protocol", Value::Null),
            ])]),
        ),
    ]);
    let p = plan(&block(), &Value::Null, &config, &config);
    assert_eq!(p.planned.get("id"), &Value::Unknown);
    assert_eq!(p.planned.get("index"), &Value::Unknown);
    assert_eq!(p.planned.get("port"), &Value::Number(0.0));
    assert_eq!(
        p.planned.get("listener").items()[0].get("protocol"),
        &Value::from("tcp")
    );
    assert!(p.requires_replace.is_empty());
}

#[test]
fn update_plan_keeps_state_marks_computed_and_requires_replace() {
    let prior = obj(&[
        ("id", "1".into()),
        ("name", "web".into()),
        ("port", 0i64.into()),
        ("index", "7".into()),
    ]);
    // No change: every computed value stays.
    let config = obj(&[("name", "web".into())]);
    let mut proposed = config.clone();
    proposed.set("id", "1".into());
    proposed.set("index", "7".into());
    proposed.set("port", 0i64.into());
    let p = plan(&block(), &prior, &proposed, &config);
    assert_eq!(p.planned, prior);

    // A rename: id kept (UseStateForUnknown), index unknown, replacement on name.
    let mut config2 = config.clone();
    config2.set("name", "api".into());
    let mut proposed2 = proposed.clone();
    proposed2.set("name", "api".into());
    let p = plan(&block(), &prior, &proposed2, &config2);
    assert_eq!(p.planned.get("id"), &Value::from("1"));
    assert_eq!(p.planned.get("index"), &Value::Unknown);
    assert_eq!(p.requires_replace, vec![AttrPath::attr("name")]);
}

#[test]
fn validators_report_the_attribute_path() {
    let mut diags = Diagnostics::default();
    let v = obj(&[("action", "maybe".into())]);
    block().validate(&v, &AttrPath::default(), &mut diags);
    assert!(diags.has_errors());
    assert_eq!(diags.0[0].path, Some(AttrPath::attr("action")));
    assert!(diags.0[0].detail.contains("allow"), "{}", diags.0[0].detail);
    let mut diags = Diagnostics::default();
    block().validate(
        &obj(&[("action", Value::Unknown)]),
        &AttrPath::default(),
        &mut diags,
    );
    assert!(!diags.has_errors());
}
