//! Entry point for the cargo-fuzz target in `fuzz/` (feature `fuzzing`):
//! any bytes as a JSON request body, through the one decoder and every
//! typed reading of it that needs no running agent. Errors, never panics.

use crate::wire::{decode_json, parse_value, ServiceDef};

/// `data` as a request body.
pub fn json_body(data: &[u8]) {
    let Ok(value) = decode_json(data, "fuzz") else {
        return;
    };
    let ctx = crate::txn::Context {
        owner: "api".into(),
        takeover: false,
        datacenter: "dc1".into(),
    };
    let _ = crate::txn::decode_ops(&value, &ctx);
    let _ = crate::catalog::deregister_command("api", false, &value);
    let _ = crate::intention_wire::parse_intention(&value, None, None, "api");
    let _ = crate::intention_wire::parse_service_intentions(&value, "api");
    let _ = crate::decoded::parse_agent_token(&value);
    if let Ok(def) = parse_value::<ServiceDef>(value.clone(), "fuzz") {
        let _ = def.to_service("api");
    }
    let _ = mesh_checks::CheckDefinition::from_consul_json(&crate::wire::fold_keys(value), "");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stable stand-in for the fuzzer: mutations of real bodies.
    #[test]
    fn mutated_bodies_are_errors_not_panics() {
        let seeds: [&[u8]; 4] = [
            br#"[{"KV":{"Verb":"set","Key":"a","Value":"dg=="}}]"#,
            br#"{"Name":"web","Port":80,"Connect":{"SidecarService":{}},"Check":{"TTL":"10s"}}"#,
            br#"{"SourceName":"a","DestinationName":"b","Permissions":[{"Action":"allow","HTTP":{"PathPrefix":"/"}}]}"#,
            br#"{"Kind":"service-intentions","Name":"db","Sources":[{"Name":"web","Action":"deny"}]}"#,
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..4000 {
            let mut body = seeds[round % seeds.len()].to_vec();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() as usize) % body.len();
                match next() % 3 {
                    0 => body[i] = next() as u8,
                    1 => body.insert(i, b"{}[]\":,aA_"[(next() % 10) as usize]),
                    _ => {
                        body.remove(i);
                    }
                }
            }
            json_body(&body);
        }
        // Nesting past serde_json's limit is an error, not a stack overflow.
        json_body(&[b'['; 100_000]);
    }
}
