//! Any bytes as a msgpack value from Terraform, read against a schema type
//! with every kind of nesting.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use tfplug::Type;

fuzz_target!(|data: &[u8]| {
    let ty = Type::Object(BTreeMap::from([
        ("name".to_string(), Type::String),
        ("port".to_string(), Type::Number),
        ("on".to_string(), Type::Bool),
        ("tags".to_string(), Type::List(Box::new(Type::String))),
        ("ids".to_string(), Type::Set(Box::new(Type::Number))),
        (
            "meta".to_string(),
            Type::Map(Box::new(Type::Object(BTreeMap::from([(
                "x".to_string(),
                Type::List(Box::new(Type::Bool)),
            )])))),
        ),
    ]));
    let _ = tfplug::Value::from_msgpack(data, &ty);
});
