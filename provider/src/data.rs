//! Data sources: `mesh_service`, `mesh_services`, `mesh_nodes`, `mesh_ca_roots`.

use std::sync::Arc;

use serde_json::Value as Json;
use tfplug::{Attribute, Block, DataSource, Diagnostics, Schema, Type, Value};

use crate::provider::Shared;
use crate::util::{self, report, s};

/// Every data source.
pub fn all(shared: &Arc<Shared>) -> Vec<Arc<dyn DataSource>> {
    [Kind::Service, Kind::Services, Kind::Nodes, Kind::CaRoots]
        .into_iter()
        .map(|kind| {
            Arc::new(Data {
                shared: shared.clone(),
                kind,
            }) as Arc<dyn DataSource>
        })
        .collect()
}

#[derive(Clone, Copy)]
enum Kind {
    Service,
    Services,
    Nodes,
    CaRoots,
}

struct Data {
    shared: Arc<Shared>,
    kind: Kind,
}

fn instance_type() -> Type {
    Type::object([
        ("node", Type::String),
        ("address", Type::String),
        ("service_id", Type::String),
        ("service_address", Type::String),
        ("port", Type::Number),
        ("tags", Type::list(Type::String)),
        ("meta", Type::map(Type::String)),
    ])
}

fn node_type() -> Type {
    Type::object([
        ("id", Type::String),
        ("name", Type::String),
        ("address", Type::String),
        ("datacenter", Type::String),
        ("meta", Type::map(Type::String)),
    ])
}

fn root_type() -> Type {
    Type::object([
        ("id", Type::String),
        ("name", Type::String),
        ("root_cert", Type::String),
        ("active", Type::Bool),
    ])
}

#[tonic::async_trait]
impl DataSource for Data {
    fn type_name(&self) -> &str {
        match self.kind {
            Kind::Service => "mesh_service",
            Kind::Services => "mesh_services",
            Kind::Nodes => "mesh_nodes",
            Kind::CaRoots => "mesh_ca_roots",
        }
    }

    fn schema(&self) -> Schema {
        let id = Attribute::string("id")
            .computed()
            .describe("Identifier of the read.");
        Schema::new(match self.kind {
            Kind::Service => Block::new("Instances of one service in the catalog.")
                .attr(id)
                .attr(
                    Attribute::string("name")
                        .required()
                        .describe("Service name."),
                )
                .attr(
                    Attribute::new("instances", Type::list(instance_type()))
                        .computed()
                        .describe("The instances."),
                ),
            Kind::Services => Block::new("Every service name in the catalog, with its tags.")
                .attr(id)
                .attr(
                    Attribute::new("names", Type::list(Type::String))
                        .computed()
                        .describe("Service names, sorted."),
                )
                .attr(
                    Attribute::new("tags", Type::map(Type::list(Type::String)))
                        .computed()
                        .describe("Service name → tags."),
                ),
            Kind::Nodes => Block::new("Every node in the catalog.").attr(id).attr(
                Attribute::new("nodes", Type::list(node_type()))
                    .computed()
                    .describe("The nodes."),
            ),
            Kind::CaRoots => Block::new("The Connect CA's trust bundle.")
                .attr(id)
                .attr(
                    Attribute::string("trust_domain")
                        .computed()
                        .describe("SPIFFE trust domain."),
                )
                .attr(
                    Attribute::string("active_root_id")
                        .computed()
                        .describe("ID of the active root."),
                )
                .attr(
                    Attribute::new("roots", Type::list(root_type()))
                        .computed()
                        .describe("Roots, active and not."),
                ),
        })
    }

    async fn read(&self, config: &Value, diags: &mut Diagnostics) -> Value {
        let Some(c) = self.shared.client(diags) else {
            return Value::Null;
        };
        let opts = Default::default();
        let mut out = config.clone();
        match self.kind {
            Kind::Service => {
                let name = s(config, "name");
                match c.catalog_service(&name, &opts).await {
                    Ok(list) => {
                        out.set("id", name.into());
                        out.set(
                            "instances",
                            Value::List(list.iter().map(instance).collect()),
                        );
                    }
                    Err(e) => report(diags, e, "read the service", None),
                }
            }
            Kind::Services => match c.catalog_services(&opts).await {
                Ok(map) => {
                    out.set("id", "services".into());
                    out.set(
                        "names",
                        Value::List(map.keys().map(|k| Value::from(k.as_str())).collect()),
                    );
                    out.set(
                        "tags",
                        Value::Map(
                            map.iter()
                                .map(|(k, t)| (k.clone(), util::list_from_json(t)))
                                .collect(),
                        ),
                    );
                }
                Err(e) => report(diags, e, "read services", None),
            },
            Kind::Nodes => match c.catalog_nodes(&opts).await {
                Ok(list) => {
                    out.set("id", "nodes".into());
                    out.set("nodes", Value::List(list.iter().map(node).collect()));
                }
                Err(e) => report(diags, e, "read nodes", None),
            },
            Kind::CaRoots => match c.ca_roots(&opts).await {
                Ok(Some(r)) => {
                    out.set("id", util::str_from_json(&r["TrustDomain"]));
                    out.set("trust_domain", util::str_from_json(&r["TrustDomain"]));
                    out.set("active_root_id", util::str_from_json(&r["ActiveRootID"]));
                    let roots = r["Roots"].as_array().cloned().unwrap_or_default();
                    out.set("roots", Value::List(roots.iter().map(root).collect()));
                }
                Ok(None) => diags.error("No CA roots", "the agent has no /v1/connect/ca/roots yet"),
                Err(e) => report(diags, e, "read CA roots", None),
            },
        }
        out
    }
}

fn instance(j: &Json) -> Value {
    Value::object([
        ("node", util::str_from_json(&j["Node"])),
        ("address", util::str_from_json(&j["Address"])),
        ("service_id", util::str_from_json(&j["ServiceID"])),
        ("service_address", util::str_from_json(&j["ServiceAddress"])),
        (
            "port",
            Value::from(j["ServicePort"].as_i64().unwrap_or_default()),
        ),
        ("tags", util::list_from_json(&j["ServiceTags"])),
        ("meta", util::map_from_json(&j["ServiceMeta"])),
    ])
}

fn node(j: &Json) -> Value {
    Value::object([
        ("id", util::str_from_json(&j["ID"])),
        ("name", util::str_from_json(&j["Node"])),
        ("address", util::str_from_json(&j["Address"])),
        ("datacenter", util::str_from_json(&j["Datacenter"])),
        ("meta", util::map_from_json(&j["Meta"])),
    ])
}

fn root(j: &Json) -> Value {
    Value::object([
        ("id", util::str_from_json(&j["ID"])),
        ("name", util::str_from_json(&j["Name"])),
        ("root_cert", util::str_from_json(&j["RootCert"])),
        (
            "active",
            Value::from(j["Active"].as_bool().unwrap_or_default()),
        ),
    ])
}
