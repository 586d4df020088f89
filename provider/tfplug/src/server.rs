//! The `tfplugin6.Provider` gRPC service: decodes values per schema, runs
//! validation and the generic plan, and calls the provider's traits.

use std::collections::HashMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::diag::{AttrPath, Diagnostics};
use crate::plan::plan;
use crate::proto::tfplugin6 as pb;
use crate::provider::{DataSource, Provider, Resource};
use crate::schema::Schema;
use crate::value::{Type, Value};

struct Managed {
    resource: Arc<dyn Resource>,
    schema: Schema,
    ty: Type,
}

struct Data {
    source: Arc<dyn DataSource>,
    schema: Schema,
    ty: Type,
}

/// Serves one `Provider` over the protocol; schemas are computed once.
pub struct ProviderService {
    provider: Arc<dyn Provider>,
    schema: Schema,
    resources: HashMap<String, Managed>,
    data_sources: HashMap<String, Data>,
    schema_response: pb::get_provider_schema::Response,
}

impl ProviderService {
    /// Wraps `provider`, computing its schemas.
    pub fn new(provider: Arc<dyn Provider>) -> ProviderService {
        let schema = provider.schema();
        let resources: HashMap<String, Managed> = provider
            .resources()
            .into_iter()
            .map(|r| {
                let schema = r.schema();
                let ty = schema.block.ty();
                (
                    r.type_name().to_string(),
                    Managed {
                        resource: r,
                        schema,
                        ty,
                    },
                )
            })
            .collect();
        let data_sources: HashMap<String, Data> = provider
            .data_sources()
            .into_iter()
            .map(|d| {
                let schema = d.schema();
                let ty = schema.block.ty();
                (
                    d.type_name().to_string(),
                    Data {
                        source: d,
                        schema,
                        ty,
                    },
                )
            })
            .collect();
        let schema_response = pb::get_provider_schema::Response {
            provider: Some(schema.to_proto()),
            resource_schemas: resources
                .iter()
                .map(|(k, m)| (k.clone(), m.schema.to_proto()))
                .collect(),
            data_source_schemas: data_sources
                .iter()
                .map(|(k, d)| (k.clone(), d.schema.to_proto()))
                .collect(),
            server_capabilities: Some(capabilities()),
            ..Default::default()
        };
        ProviderService {
            provider,
            schema,
            resources,
            data_sources,
            schema_response,
        }
    }

    /// The `GetProviderSchema` answer (also used to render docs).
    pub fn schema_response(&self) -> &pb::get_provider_schema::Response {
        &self.schema_response
    }

    fn managed(&self, name: &str) -> Result<&Managed, Status> {
        self.resources
            .get(name)
            .ok_or_else(|| Status::not_found(format!("unknown resource type {name:?}")))
    }

    fn data(&self, name: &str) -> Result<&Data, Status> {
        self.data_sources
            .get(name)
            .ok_or_else(|| Status::not_found(format!("unknown data source {name:?}")))
    }
}

fn capabilities() -> pb::ServerCapabilities {
    pb::ServerCapabilities {
        plan_destroy: false,
        get_provider_schema_optional: true,
        move_resource_state: false,
    }
}

/// Decodes an optional DynamicValue; null when absent.
fn decode(v: &Option<pb::DynamicValue>, ty: &Type, diags: &mut Diagnostics) -> Value {
    let Some(v) = v else { return Value::Null };
    let result = if !v.msgpack.is_empty() {
        Value::from_msgpack(&v.msgpack, ty)
    } else if !v.json.is_empty() {
        serde_json::from_slice(&v.json)
            .map_err(|e| crate::Error::Decode {
                path: String::new(),
                reason: e.to_string(),
            })
            .and_then(|j| Value::from_json(&j, ty))
    } else {
        Ok(Value::Null)
    };
    result.unwrap_or_else(|e| {
        diags.error("Cannot decode value from Terraform", e.to_string());
        Value::Null
    })
}

fn encode(v: &Value, ty: &Type) -> Option<pb::DynamicValue> {
    Some(pb::DynamicValue {
        msgpack: v.to_msgpack(ty),
        json: vec![],
    })
}

#[tonic::async_trait]
impl pb::provider_server::Provider for ProviderService {
    async fn get_metadata(
        &self,
        _: Request<pb::get_metadata::Request>,
    ) -> Result<Response<pb::get_metadata::Response>, Status> {
        Ok(Response::new(pb::get_metadata::Response {
            server_capabilities: Some(capabilities()),
            diagnostics: vec![],
            data_sources: self
                .data_sources
                .keys()
                .map(|k| pb::get_metadata::DataSourceMetadata {
                    type_name: k.clone(),
                })
                .collect(),
            resources: self
                .resources
                .keys()
                .map(|k| pb::get_metadata::ResourceMetadata {
                    type_name: k.clone(),
                })
                .collect(),
        }))
    }

    async fn get_provider_schema(
        &self,
        _: Request<pb::get_provider_schema::Request>,
    ) -> Result<Response<pb::get_provider_schema::Response>, Status> {
        Ok(Response::new(self.schema_response.clone()))
    }

    async fn validate_provider_config(
        &self,
        req: Request<pb::validate_provider_config::Request>,
    ) -> Result<Response<pb::validate_provider_config::Response>, Status> {
        let mut diags = Diagnostics::default();
        let config = decode(&req.get_ref().config, &self.schema.block.ty(), &mut diags);
        if !diags.has_errors() {
            self.schema
                .block
                .validate(&config, &AttrPath::default(), &mut diags);
            self.provider.validate(&config, &mut diags).await;
        }
        Ok(Response::new(pb::validate_provider_config::Response {
            diagnostics: diags.into_proto(),
        }))
    }

    async fn validate_resource_config(
        &self,
        req: Request<pb::validate_resource_config::Request>,
    ) -> Result<Response<pb::validate_resource_config::Response>, Status> {
        let req = req.into_inner();
        let m = self.managed(&req.type_name)?;
        let mut diags = Diagnostics::default();
        let config = decode(&req.config, &m.ty, &mut diags);
        if !diags.has_errors() {
            m.schema
                .block
                .validate(&config, &AttrPath::default(), &mut diags);
            m.resource.validate(&config, &mut diags).await;
        }
        Ok(Response::new(pb::validate_resource_config::Response {
            diagnostics: diags.into_proto(),
        }))
    }

    async fn validate_data_resource_config(
        &self,
        req: Request<pb::validate_data_resource_config::Request>,
    ) -> Result<Response<pb::validate_data_resource_config::Response>, Status> {
        let req = req.into_inner();
        let d = self.data(&req.type_name)?;
        let mut diags = Diagnostics::default();
        let config = decode(&req.config, &d.ty, &mut diags);
        if !diags.has_errors() {
            d.schema
                .block
                .validate(&config, &AttrPath::default(), &mut diags);
            d.source.validate(&config, &mut diags).await;
        }
        Ok(Response::new(pb::validate_data_resource_config::Response {
            diagnostics: diags.into_proto(),
        }))
    }

    async fn upgrade_resource_state(
        &self,
        req: Request<pb::upgrade_resource_state::Request>,
    ) -> Result<Response<pb::upgrade_resource_state::Response>, Status> {
        let req = req.into_inner();
        let m = self.managed(&req.type_name)?;
        let mut diags = Diagnostics::default();
        let raw = req.raw_state.unwrap_or_default();
        let state = if raw.json.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&raw.json) {
                Ok(json) => m.resource.upgrade(req.version, &json, &mut diags),
                Err(e) => {
                    diags.error("Stored state is not JSON", e.to_string());
                    Value::Null
                }
            }
        };
        Ok(Response::new(pb::upgrade_resource_state::Response {
            upgraded_state: encode(&state, &m.ty),
            diagnostics: diags.into_proto(),
        }))
    }

    async fn configure_provider(
        &self,
        req: Request<pb::configure_provider::Request>,
    ) -> Result<Response<pb::configure_provider::Response>, Status> {
        let mut diags = Diagnostics::default();
        let config = decode(&req.get_ref().config, &self.schema.block.ty(), &mut diags);
        if !diags.has_errors() {
            self.provider.configure(&config, &mut diags).await;
        }
        Ok(Response::new(pb::configure_provider::Response {
            diagnostics: diags.into_proto(),
        }))
    }

    async fn read_resource(
        &self,
        req: Request<pb::read_resource::Request>,
    ) -> Result<Response<pb::read_resource::Response>, Status> {
        let req = req.into_inner();
        let m = self.managed(&req.type_name)?;
        let mut diags = Diagnostics::default();
        let current = decode(&req.current_state, &m.ty, &mut diags);
        let new_state = if diags.has_errors() || current.is_null() {
            current
        } else {
            let read = m.resource.read(&current, &mut diags).await;
            // A failed read keeps what Terraform had rather than dropping it.
            if diags.has_errors() {
                current
            } else {
                read
            }
        };
        Ok(Response::new(pb::read_resource::Response {
            new_state: encode(&new_state, &m.ty),
            diagnostics: diags.into_proto(),
            private: req.private,
            deferred: None,
        }))
    }

    async fn plan_resource_change(
        &self,
        req: Request<pb::plan_resource_change::Request>,
    ) -> Result<Response<pb::plan_resource_change::Response>, Status> {
        let req = req.into_inner();
        let m = self.managed(&req.type_name)?;
        let mut diags = Diagnostics::default();
        let prior = decode(&req.prior_state, &m.ty, &mut diags);
        let proposed = decode(&req.proposed_new_state, &m.ty, &mut diags);
        let config = decode(&req.config, &m.ty, &mut diags);
        let mut result = plan(&m.schema.block, &prior, &proposed, &config);
        if !diags.has_errors() && !proposed.is_null() {
            m.resource
                .modify_plan(&prior, &config, &mut result, &mut diags)
                .await;
        } else if !diags.has_errors() && !prior.is_null() {
            m.resource.plan_destroy(&prior, &mut diags).await;
        }
        Ok(Response::new(pb::plan_resource_change::Response {
            planned_state: encode(&result.planned, &m.ty),
            requires_replace: result
                .requires_replace
                .iter()
                .map(AttrPath::to_proto)
                .collect(),
            planned_private: req.prior_private,
            diagnostics: diags.into_proto(),
            legacy_type_system: false,
            deferred: None,
        }))
    }

    async fn apply_resource_change(
        &self,
        req: Request<pb::apply_resource_change::Request>,
    ) -> Result<Response<pb::apply_resource_change::Response>, Status> {
        let req = req.into_inner();
        let m = self.managed(&req.type_name)?;
        let mut diags = Diagnostics::default();
        let prior = decode(&req.prior_state, &m.ty, &mut diags);
        let planned = decode(&req.planned_state, &m.ty, &mut diags);
        let config = decode(&req.config, &m.ty, &mut diags);
        let new_state = if diags.has_errors() {
            prior
        } else if planned.is_null() {
            m.resource.delete(&prior, &mut diags).await;
            if diags.has_errors() {
                prior
            } else {
                Value::Null
            }
        } else if prior.is_null() {
            let created = m.resource.create(&planned, &config, &mut diags).await;
            if diags.has_errors() {
                Value::Null
            } else {
                created
            }
        } else {
            let updated = m
                .resource
                .update(&prior, &planned, &config, &mut diags)
                .await;
            if diags.has_errors() {
                prior
            } else {
                updated
            }
        };
        Ok(Response::new(pb::apply_resource_change::Response {
            new_state: encode(&new_state, &m.ty),
            private: req.planned_private,
            diagnostics: diags.into_proto(),
            legacy_type_system: false,
        }))
    }

    async fn import_resource_state(
        &self,
        req: Request<pb::import_resource_state::Request>,
    ) -> Result<Response<pb::import_resource_state::Response>, Status> {
        let req = req.into_inner();
        let m = self.managed(&req.type_name)?;
        let mut diags = Diagnostics::default();
        let state = m.resource.import(&req.id, &mut diags).await;
        let imported = if diags.has_errors() {
            vec![]
        } else {
            vec![pb::import_resource_state::ImportedResource {
                type_name: req.type_name.clone(),
                state: encode(&state, &m.ty),
                private: vec![],
            }]
        };
        Ok(Response::new(pb::import_resource_state::Response {
            imported_resources: imported,
            diagnostics: diags.into_proto(),
            deferred: None,
        }))
    }

    async fn read_data_source(
        &self,
        req: Request<pb::read_data_source::Request>,
    ) -> Result<Response<pb::read_data_source::Response>, Status> {
        let req = req.into_inner();
        let d = self.data(&req.type_name)?;
        let mut diags = Diagnostics::default();
        let config = decode(&req.config, &d.ty, &mut diags);
        let state = if diags.has_errors() {
            Value::Null
        } else {
            d.source.read(&config, &mut diags).await
        };
        Ok(Response::new(pb::read_data_source::Response {
            state: encode(&state, &d.ty),
            diagnostics: diags.into_proto(),
            deferred: None,
        }))
    }

    async fn stop_provider(
        &self,
        _: Request<pb::stop_provider::Request>,
    ) -> Result<Response<pb::stop_provider::Response>, Status> {
        self.provider.stop().await;
        Ok(Response::new(pb::stop_provider::Response {
            error: String::new(),
        }))
    }
}
