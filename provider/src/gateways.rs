//! `mesh_ingress_gateway` and `mesh_terminating_gateway`: typed wrappers over
//! the `ingress-gateway` and `terminating-gateway` config entries.

use std::sync::Arc;

use serde_json::{json, Value as Json};
use tfplug::{Attribute, Block, Diagnostics, NestedBlock, Plan, Schema, Type, Validator, Value};

use crate::config_entry::{check_entry_owner, delete_entry, get_entry, put_entry};
use crate::provider::Shared;
use crate::util::{self, n, s, strings};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Ingress,
    Terminating,
}

/// A gateway config entry as a resource.
pub struct GatewayResource {
    shared: Arc<Shared>,
    kind: Kind,
}

impl GatewayResource {
    /// `mesh_ingress_gateway`.
    pub fn ingress(shared: Arc<Shared>) -> Self {
        GatewayResource {
            shared,
            kind: Kind::Ingress,
        }
    }
    /// `mesh_terminating_gateway`.
    pub fn terminating(shared: Arc<Shared>) -> Self {
        GatewayResource {
            shared,
            kind: Kind::Terminating,
        }
    }

    fn entry_kind(&self) -> &'static str {
        match self.kind {
            Kind::Ingress => "ingress-gateway",
            Kind::Terminating => "terminating-gateway",
        }
    }

    /// The entry body for a planned value.
    fn body(&self, v: &Value) -> Json {
        match self.kind {
            Kind::Ingress => json!({
                "Listeners": v.get("listener").items().iter().map(|l| {
                    let mut listener = json!({
                        "Port": n(l, "port"),
                        "Protocol": s(l, "protocol"),
                        "Services": l.get("service").items().iter().map(|svc| {
                            let mut o = json!({"Name": s(svc, "name")});
                            let hosts = strings(svc.get("hosts"));
                            if !hosts.is_empty() {
                                o["Hosts"] = json!(hosts);
                            }
                            o
                        }).collect::<Vec<_>>(),
                    });
                    if l.get("tls").as_bool() == Some(true) {
                        listener["TLS"] = json!({"Enabled": true});
                    }
                    listener
                }).collect::<Vec<_>>(),
            }),
            Kind::Terminating => json!({
                "Services": v.get("service").items().iter().map(|svc| {
                    let mut o = serde_json::Map::new();
                    o.insert("Name".into(), s(svc, "name").into());
                    for (key, attr) in TLS_FIELDS {
                        crate::util::put_str(&mut o, key, svc.get(attr));
                    }
                    Json::Object(o)
                }).collect::<Vec<_>>(),
            }),
        }
    }

    /// The resource value for an entry body read back.
    fn value_of(&self, name: &str, body: &Json) -> Value {
        let get = |o: &Json, k: &str| -> Json {
            o.as_object()
                .and_then(|m| m.iter().find(|(key, _)| key.eq_ignore_ascii_case(k)))
                .map(|(_, v)| v.clone())
                .unwrap_or(Json::Null)
        };
        let opt_str = |j: Json| match j.as_str() {
            Some(s) if !s.is_empty() => Value::from(s),
            _ => Value::Null,
        };
        let mut v = Value::object([("id", Value::from(name)), ("name", Value::from(name))]);
        match self.kind {
            Kind::Ingress => {
                let listeners = get(body, "Listeners")
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                v.set(
                    "listener",
                    Value::List(
                        listeners
                            .iter()
                            .map(|l| {
                                let services =
                                    get(l, "Services").as_array().cloned().unwrap_or_default();
                                Value::object([
                                    (
                                        "port",
                                        Value::from(get(l, "Port").as_i64().unwrap_or_default()),
                                    ),
                                    (
                                        "tls",
                                        Value::from(
                                            get(&get(l, "TLS"), "Enabled")
                                                .as_bool()
                                                .unwrap_or(false),
                                        ),
                                    ),
                                    (
                                        "protocol",
                                        Value::from(
                                            get(l, "Protocol")
                                                .as_str()
                                                .filter(|p| !p.is_empty())
                                                .unwrap_or("tcp"),
                                        ),
                                    ),
                                    (
                                        "service",
                                        Value::List(
                                            services
                                                .iter()
                                                .map(|svc| {
                                                    let hosts = crate::util::list_from_json(&get(
                                                        svc, "Hosts",
                                                    ));
                                                    let hosts = if hosts.items().is_empty() {
                                                        Value::Null
                                                    } else {
                                                        hosts
                                                    };
                                                    Value::object([
                                                        ("name", opt_str(get(svc, "Name"))),
                                                        ("hosts", hosts),
                                                    ])
                                                })
                                                .collect(),
                                        ),
                                    ),
                                ])
                            })
                            .collect(),
                    ),
                );
            }
            Kind::Terminating => {
                let services = get(body, "Services")
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                v.set(
                    "service",
                    Value::List(
                        services
                            .iter()
                            .map(|svc| {
                                let mut o = Value::object([("name", opt_str(get(svc, "Name")))]);
                                for (key, attr) in TLS_FIELDS {
                                    o.set(attr, opt_str(get(svc, key)));
                                }
                                o
                            })
                            .collect(),
                    ),
                );
            }
        }
        v
    }
}

const TLS_FIELDS: [(&str, &str); 4] = [
    ("CAFile", "ca_file"),
    ("CertFile", "cert_file"),
    ("KeyFile", "key_file"),
    ("SNI", "sni"),
];

#[tonic::async_trait]
impl tfplug::Resource for GatewayResource {
    fn type_name(&self) -> &str {
        match self.kind {
            Kind::Ingress => "mesh_ingress_gateway",
            Kind::Terminating => "mesh_terminating_gateway",
        }
    }

    fn schema(&self) -> Schema {
        let base = |d: &str| {
            Block::new(d)
                .attr(
                    Attribute::string("id")
                        .computed()
                        .use_state_for_unknown()
                        .describe("The gateway name."),
                )
                .attr(
                    Attribute::string("name")
                        .required()
                        .requires_replace()
                        .describe("Gateway service name."),
                )
                .attr(util::takeover_attr())
        };
        let block = match self.kind {
            Kind::Ingress => base("An `ingress-gateway` config entry: listeners and the services behind them. Import with the name.").block(
                NestedBlock::list(
                    "listener",
                    Block::new("A port the gateway listens on.")
                        .attr(Attribute::number("port").required().validate(Validator::Range(1.0, 65535.0)).describe("Listener port."))
                        .attr(
                            Attribute::string("protocol")
                                .default("tcp")
                                .validate(Validator::OneOf(["tcp", "http", "http2", "grpc"].map(String::from).to_vec()))
                                .describe("Listener protocol."),
                        )
                        .attr(
                            Attribute::bool("tls")
                                .default(false)
                                .describe("TLS on the listener, with a certificate from the Connect CA naming its hosts."),
                        )
                        .block(NestedBlock::list(
                            "service",
                            Block::new("A service exposed on the listener.")
                                .attr(Attribute::string("name").required().describe("Service name."))
                                .attr(Attribute::new("hosts", Type::list(Type::String)).describe("Host names matched (http listeners).")),
                        )),
                )
                .items(1, 0),
            ),
            Kind::Terminating => base("A `terminating-gateway` config entry: external services reached through the gateway. Import with the name.")
                .block(NestedBlock::list(
                    "service",
                    Block::new("An external service.")
                        .attr(Attribute::string("name").required().describe("Service name."))
                        .attr(Attribute::string("ca_file").describe("CA bundle to verify the service."))
                        .attr(Attribute::string("cert_file").describe("Client certificate presented to the service."))
                        .attr(Attribute::string("key_file").describe("Key of the client certificate."))
                        .attr(Attribute::string("sni").describe("SNI sent to the service.")),
                )),
        };
        Schema::new(block)
    }

    async fn modify_plan(&self, _: &Value, _: &Value, plan: &mut Plan, diags: &mut Diagnostics) {
        check_entry_owner(&self.shared, self.entry_kind(), &plan.planned, diags).await;
    }

    async fn plan_destroy(&self, prior: &Value, diags: &mut Diagnostics) {
        check_entry_owner(&self.shared, self.entry_kind(), prior, diags).await;
    }

    async fn create(&self, planned: &Value, _: &Value, diags: &mut Diagnostics) -> Value {
        self.write(planned, diags).await
    }

    async fn read(&self, state: &Value, diags: &mut Diagnostics) -> Value {
        let name = s(state, "name");
        match get_entry(&self.shared, self.entry_kind(), &name, diags).await {
            Err(()) => state.clone(),
            Ok(None) => Value::Null,
            Ok(Some(body)) => {
                let mut out = self.value_of(&name, &body);
                util::keep_takeover(state, &mut out);
                out
            }
        }
    }

    async fn delete(&self, prior: &Value, diags: &mut Diagnostics) {
        let takeover = util::takeover(prior);
        delete_entry(
            &self.shared,
            self.entry_kind(),
            &s(prior, "name"),
            takeover,
            diags,
        )
        .await
    }

    async fn import(&self, id: &str, _: &mut Diagnostics) -> Value {
        Value::object([("id", Value::from(id)), ("name", Value::from(id))])
    }
}

impl GatewayResource {
    async fn write(&self, planned: &Value, diags: &mut Diagnostics) -> Value {
        let name = s(planned, "name");
        if !put_entry(
            &self.shared,
            self.entry_kind(),
            &name,
            &self.body(planned),
            util::takeover(planned),
            diags,
        )
        .await
        {
            return Value::Null;
        }
        let mut v = planned.clone();
        v.set("id", name.into());
        v
    }
}
