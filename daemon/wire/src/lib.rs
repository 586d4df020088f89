//! Consul's JSON shapes. Input keys are matched case-insensitively and
//! ignoring underscores (python-consul sends lowercase keys, HCL snake_case):
//! `fold_keys` normalises them before serde sees the body; user-chosen map
//! keys (Meta, NodeMeta, ...) are left as they are.

use std::collections::BTreeMap;

use mesh_types::{HealthCheck, Node, Proxy, Service, Upstream, Weights};
use serde::Deserialize;
use serde_json::{json, Map, Value};

pub mod intention;

/// A body or declaration that does not decode: what is wrong and where.
/// The HTTP API answers it as a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct WireError {
    pub message: String,
}

impl WireError {
    pub fn new(message: impl Into<String>) -> Self {
        WireError {
            message: message.into(),
        }
    }
}

/// Keys whose values are maps with user-chosen keys.
const USER_MAPS: &[&str] = &[
    "meta",
    "nodemeta",
    "servicemeta",
    "taggedaddresses",
    "header",
    "config",
];

/// A key as every decoder compares it: lowercase, without `_`.
pub fn fold_key(k: &str) -> String {
    k.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether two keys name one field: case and `_` aside, as every body is
/// read.
pub fn same_key(a: &str, b: &str) -> bool {
    fold_key(a) == fold_key(b)
}

/// The value of the field `name` in `map`, however its key is spelled.
pub fn field<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.iter().find(|(k, _)| same_key(k, name)).map(|(_, v)| v)
}

/// [`field`], to change in place.
pub fn field_mut<'a>(map: &'a mut Map<String, Value>, name: &str) -> Option<&'a mut Value> {
    map.iter_mut()
        .find(|(k, _)| same_key(k, name))
        .map(|(_, v)| v)
}

/// Removes the field `name` from `map`, however its key is spelled.
pub fn take_field(map: &mut Map<String, Value>, name: &str) -> Option<Value> {
    let key = map.keys().find(|k| same_key(k, name)).cloned()?;
    map.remove(&key)
}

/// Lowercase every object key and drop underscores, except inside user maps.
/// On a value from [`decode_json`] no two keys can fold into one.
pub fn fold_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let folded = fold_key(&k);
                    let v = if USER_MAPS.contains(&folded.as_str()) {
                        v
                    } else {
                        fold_keys(v)
                    };
                    (folded, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(fold_keys).collect()),
        other => other,
    }
}

/// The one way a request body becomes JSON: keys as sent, but two keys of
/// one object that name the same field (`Key` and `key`, or `Key` twice) are
/// an error, so no reader can see one and another reader the other. Nesting
/// is bounded by serde_json's recursion limit (128).
pub fn decode_json(body: &[u8], what: &str) -> Result<Value, WireError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde::de::DeserializeSeed::deserialize(Strict { user_map: false }, &mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| WireError::new(format!("Request decode failed: {what}: {e}")))?;
    Ok(value)
}

/// Parses a JSON value, refusing keys that collide (after folding, except
/// inside user maps, whose keys are compared as they are).
#[derive(Clone, Copy)]
struct Strict {
    user_map: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for Strict {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict { user_map: false })? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        // Folded (or, in a user map, exact) name -> the key as first sent.
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            // Dashes too: check definitions also read `Service-ID` as `ServiceID`.
            let name = if self.user_map {
                key.clone()
            } else {
                fold_key(&key).replace('-', "")
            };
            if let Some(first) = seen.get(&name) {
                return Err(serde::de::Error::custom(format!(
                    "duplicate key {key:?} (already given as {first:?})"
                )));
            }
            let user_map = !self.user_map && USER_MAPS.contains(&fold_key(&key).as_str());
            let value = map.next_value_seed(Strict { user_map })?;
            seen.insert(name, key.clone());
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// Parse a request body into `T` after folding its keys; errors are 400s.
pub fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8], what: &str) -> Result<T, WireError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(WireError::new(format!(
            "Request decode failed: {what}: empty body"
        )));
    }
    parse_value(decode_json(body, what)?, what)
}

/// Decode `T` from a declaration already parsed into a value (mesh.d's
/// HCL or JSON), with the checks [`decode_json`] makes on a body: two keys
/// that name one field are an error.
pub fn parse_declared<T: for<'de> Deserialize<'de>>(
    value: Value,
    what: &str,
) -> Result<T, WireError> {
    let checked = serde::de::DeserializeSeed::deserialize(Strict { user_map: false }, value)
        .map_err(|e| WireError::new(format!("{what}: {e}")))?;
    parse_value(checked, what)
}

/// Decode `T` from a value of [`decode_json`], keys folded; errors are 400s.
pub fn parse_value<T: for<'de> Deserialize<'de>>(value: Value, what: &str) -> Result<T, WireError> {
    serde_json::from_value(fold_keys(value))
        .map_err(|e| WireError::new(format!("Request decode failed: {what}: {e}")))
}

// === input ===

/// A service definition (agent register, catalog register `Service`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ServiceDef {
    pub id: String,
    pub name: String,
    pub service: String,
    pub tags: Option<Vec<String>>,
    pub address: String,
    pub port: u16,
    pub meta: Option<BTreeMap<String, String>>,
    pub kind: String,
    pub weights: Option<WeightsDef>,
    pub proxy: Option<ProxyDef>,
    pub connect: Option<ConnectDef>,
    #[serde(rename = "enabletagoverride")]
    pub enable_tag_override: bool,
    pub check: Option<Value>,
    pub checks: Option<Vec<Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct WeightsDef {
    pub passing: u32,
    pub warning: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ProxyDef {
    #[serde(rename = "destinationservicename")]
    pub destination_service_name: String,
    #[serde(rename = "destinationserviceid")]
    pub destination_service_id: String,
    #[serde(rename = "localserviceaddress")]
    pub local_service_address: String,
    #[serde(rename = "localserviceport")]
    pub local_service_port: u16,
    pub upstreams: Option<Vec<UpstreamDef>>,
    pub config: Option<Value>,
}

impl ProxyDef {
    /// The opaque `Config` as stored: JSON text, `{}` when absent.
    fn config_json(&self) -> String {
        self.config
            .as_ref()
            .map_or_else(|| "{}".into(), Value::to_string)
    }

    /// The upstreams as stored.
    fn upstreams(&self) -> Vec<Upstream> {
        self.upstreams
            .iter()
            .flatten()
            .map(|u| Upstream {
                destination_name: u.destination_name.clone(),
                datacenter: u.datacenter.clone(),
                local_bind_address: u.local_bind_address.clone(),
                local_bind_port: u.local_bind_port,
            })
            .collect()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct UpstreamDef {
    #[serde(rename = "destinationname")]
    pub destination_name: String,
    pub datacenter: String,
    #[serde(rename = "localbindaddress")]
    pub local_bind_address: String,
    #[serde(rename = "localbindport")]
    pub local_bind_port: u16,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ConnectDef {
    pub native: bool,
    #[serde(rename = "sidecarservice")]
    pub sidecar_service: Option<Box<ServiceDef>>,
}

/// The name a sidecar registered with `service` gets: its own, else
/// `<service>-sidecar-proxy` (what `to_service_lenient` gives it).
pub fn sidecar_name(service: &Service, sidecar: &ServiceDef) -> String {
    [&sidecar.name, &sidecar.service]
        .into_iter()
        .find(|n| !n.is_empty())
        .cloned()
        .unwrap_or_else(|| format!("{}-sidecar-proxy", service.name))
}

impl ServiceDef {
    /// The stored service (without checks or sidecar, which register separately).
    pub fn to_service(&self, owner: &str) -> Result<Service, WireError> {
        let name = if self.name.is_empty() {
            &self.service
        } else {
            &self.name
        };
        if name.is_empty() {
            return Err(WireError::new("Missing service name"));
        }
        let kind = self.kind.clone();
        const KINDS: &[&str] = &[
            "",
            "connect-proxy",
            "mesh-gateway",
            "ingress-gateway",
            "terminating-gateway",
            "api-gateway",
        ];
        if !KINDS.contains(&kind.as_str()) {
            return Err(WireError::new(format!("Invalid service kind {kind:?}")));
        }
        let proxy = match (&self.proxy, kind.as_str()) {
            (Some(p), _) => Some(Proxy {
                destination_service_name: p.destination_service_name.clone(),
                destination_service_id: p.destination_service_id.clone(),
                local_service_address: p.local_service_address.clone(),
                local_service_port: p.local_service_port,
                upstreams: p.upstreams(),
                config_json: p.config_json(),
            }),
            (None, "connect-proxy") => {
                return Err(WireError::new("Proxy is required for kind connect-proxy"))
            }
            (None, _) => None,
        };
        if let Some(p) = &proxy {
            if kind == "connect-proxy" && p.destination_service_name.is_empty() {
                return Err(WireError::new(
                    "Proxy.DestinationServiceName is required for kind connect-proxy",
                ));
            }
        }
        let weights = match &self.weights {
            Some(w) if w.passing == 0 => {
                return Err(WireError::new("Weights.Passing must be greater than 0"))
            }
            Some(w) => Weights {
                passing: w.passing,
                warning: w.warning,
            },
            None => Weights::default(),
        };
        Ok(Service {
            id: if self.id.is_empty() {
                name.clone()
            } else {
                self.id.clone()
            },
            name: name.clone(),
            tags: self.tags.clone().unwrap_or_default(),
            address: self.address.clone(),
            port: self.port,
            meta: self.meta.clone().unwrap_or_default(),
            kind,
            weights,
            proxy,
            connect_native: self.connect.as_ref().is_some_and(|c| c.native),
            enable_tag_override: self.enable_tag_override,
            owner: owner.to_string(),
            create_index: 0,
            modify_index: 0,
        })
    }

    /// Like `to_service`, with `default_name` when the definition names none
    /// (a `SidecarService {}` block).
    pub fn to_service_lenient(
        &self,
        default_name: &str,
        owner: &str,
    ) -> Result<Service, WireError> {
        if self.name.is_empty() && self.service.is_empty() {
            let named = ServiceDef {
                name: default_name.to_string(),
                proxy: None,
                ..self.clone_shallow()
            };
            let mut svc = named.to_service(owner)?;
            svc.proxy = self.to_service_proxy();
            return Ok(svc);
        }
        let mut svc = ServiceDef {
            proxy: None,
            kind: String::new(),
            ..self.clone_shallow()
        }
        .to_service(owner)?;
        svc.proxy = self.to_service_proxy();
        Ok(svc)
    }

    fn to_service_proxy(&self) -> Option<Proxy> {
        let p = self.proxy.as_ref()?;
        Some(Proxy {
            upstreams: p.upstreams(),
            config_json: p.config_json(),
            ..Default::default()
        })
    }

    fn clone_shallow(&self) -> ServiceDef {
        ServiceDef {
            id: self.id.clone(),
            name: self.name.clone(),
            service: self.service.clone(),
            tags: self.tags.clone(),
            address: self.address.clone(),
            port: self.port,
            meta: self.meta.clone(),
            kind: self.kind.clone(),
            weights: self.weights.as_ref().map(|w| WeightsDef {
                passing: w.passing,
                warning: w.warning,
            }),
            proxy: None,
            connect: None,
            enable_tag_override: self.enable_tag_override,
            check: None,
            checks: None,
        }
    }

    /// Check definitions given with the service (`Check` and `Checks`).
    pub fn check_values(&self) -> Vec<Value> {
        self.check
            .iter()
            .cloned()
            .chain(self.checks.iter().flatten().cloned())
            .collect()
    }
}

// === output ===

fn weights_json(w: &Weights) -> Value {
    json!({ "Passing": w.passing, "Warning": w.warning })
}

fn proxy_json(p: &Proxy) -> Value {
    let config: Value = serde_json::from_str(&p.config_json).unwrap_or_else(|_| json!({}));
    json!({
        "DestinationServiceName": p.destination_service_name,
        "DestinationServiceID": p.destination_service_id,
        "LocalServiceAddress": p.local_service_address,
        "LocalServicePort": p.local_service_port,
        "Config": config,
        "Upstreams": p.upstreams.iter().map(|u| json!({
            "DestinationType": "service",
            "DestinationName": u.destination_name,
            "Datacenter": u.datacenter,
            "LocalBindAddress": u.local_bind_address,
            "LocalBindPort": u.local_bind_port,
        })).collect::<Vec<_>>(),
    })
}

/// A service as `/v1/agent/services` and `/v1/health/service` show it.
pub fn service_json(s: &Service) -> Value {
    let mut v = json!({
        "ID": s.id,
        "Service": s.name,
        "Tags": s.tags,
        "Address": s.address,
        "Meta": s.meta,
        "Port": s.port,
        "Weights": weights_json(&s.weights),
        "EnableTagOverride": s.enable_tag_override,
        "Kind": s.kind,
        "Connect": { "Native": s.connect_native },
        "Datacenter": Value::Null,
        "CreateIndex": s.create_index,
        "ModifyIndex": s.modify_index,
        "Owner": s.owner,
    });
    if let Some(p) = &s.proxy {
        v["Proxy"] = proxy_json(p);
    }
    if s.kind.is_empty() {
        v.as_object_mut().expect("object").remove("Kind");
    }
    v
}

/// A node as `/v1/catalog/nodes` and `/v1/health/service` show it.
pub fn node_json(n: &Node) -> Value {
    json!({
        "ID": n.id,
        "Node": n.name,
        "Address": n.address,
        "Datacenter": n.datacenter,
        "TaggedAddresses": n.tagged_addresses,
        "Meta": n.meta,
        "CreateIndex": n.create_index,
        "ModifyIndex": n.modify_index,
    })
}

/// A check as the health endpoints show it.
pub fn check_json(node: &str, c: &HealthCheck, service_tags: &[String]) -> Value {
    json!({
        "Node": node,
        "CheckID": c.check_id,
        "Name": c.name,
        "Status": c.status.as_str(),
        "Notes": c.notes,
        "Output": c.output,
        "ServiceID": c.service_id,
        "ServiceName": c.service_name,
        "ServiceTags": service_tags,
        "Type": c.check_type,
        "CreateIndex": c.create_index,
        "ModifyIndex": c.modify_index,
    })
}

/// A flattened node + service as `/v1/catalog/service/:name` shows it.
pub fn catalog_service_json(n: &Node, s: &Service) -> Value {
    let mut v = json!({
        "ID": n.id,
        "Node": n.name,
        "Address": n.address,
        "Datacenter": n.datacenter,
        "TaggedAddresses": n.tagged_addresses,
        "NodeMeta": n.meta,
        "ServiceKind": s.kind,
        "ServiceID": s.id,
        "ServiceName": s.name,
        "ServiceTags": s.tags,
        "ServiceAddress": s.address,
        "ServiceWeights": weights_json(&s.weights),
        "ServiceMeta": s.meta,
        "ServicePort": s.port,
        "ServiceEnableTagOverride": s.enable_tag_override,
        "ServiceConnect": { "Native": s.connect_native },
        "CreateIndex": s.create_index,
        "ModifyIndex": s.modify_index,
    });
    if let Some(p) = &s.proxy {
        v["ServiceProxy"] = proxy_json(p);
    }
    v
}

/// Objects of a JSON map in key order (for `Map` building).
pub fn object(pairs: impl IntoIterator<Item = (String, Value)>) -> Value {
    Value::Object(pairs.into_iter().collect::<Map<String, Value>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fold_but_user_maps_do_not() {
        let v =
            fold_keys(json!({"Service_ID": 1, "Meta": {"Env": "Prod"}, "Check": {"HTTP": "x"}}));
        assert_eq!(
            v,
            json!({"serviceid": 1, "meta": {"Env": "Prod"}, "check": {"http": "x"}})
        );
    }

    #[test]
    fn lowercase_and_camel_case_service_definitions_agree() {
        let a: ServiceDef =
            parse_body(br#"{"name":"web","id":"web1","port":80,"tags":["a"]}"#, "x").unwrap();
        let b: ServiceDef =
            parse_body(br#"{"Name":"web","ID":"web1","Port":80,"Tags":["a"]}"#, "x").unwrap();
        assert_eq!(a.to_service("api").unwrap(), b.to_service("api").unwrap());
    }

    #[test]
    fn fields_are_found_in_any_spelling() {
        let mut m = json!({"private_key": 1, "CSRMaxPerSecond": 2, "Service_ID": 3})
            .as_object()
            .cloned()
            .unwrap();
        assert_eq!(field(&m, "PrivateKey"), Some(&json!(1)));
        assert_eq!(field(&m, "csr_max_per_second"), Some(&json!(2)));
        assert_eq!(field(&m, "ServiceID"), Some(&json!(3)));
        assert_eq!(field(&m, "Private"), None);
        *field_mut(&mut m, "serviceid").unwrap() = json!(4);
        assert_eq!(take_field(&mut m, "SERVICE_ID"), Some(json!(4)));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn declarations_decode_like_bodies() {
        let def: ServiceDef = parse_declared(
            json!({"name": "web", "port": 80, "meta": {"A": "1", "a": "2"}}),
            "x",
        )
        .unwrap();
        assert_eq!(def.to_service("o").unwrap().port, 80);
        let e = parse_declared::<ServiceDef>(json!({"name": "web", "Name": "api"}), "service")
            .unwrap_err();
        assert!(e.message.contains("duplicate key"), "{e}");
    }

    #[test]
    fn bad_definitions_are_400s() {
        assert!(parse_body::<ServiceDef>(b"{", "x").is_err());
        assert!(parse_body::<ServiceDef>(br#"{"Port":"eighty"}"#, "x").is_err());
        let no_name: ServiceDef = parse_body(br#"{"Port":80}"#, "x").unwrap();
        assert!(no_name.to_service("api").is_err());
        let bad_kind: ServiceDef = parse_body(br#"{"Name":"x","Kind":"weird"}"#, "x").unwrap();
        assert!(bad_kind.to_service("api").is_err());
    }
}
