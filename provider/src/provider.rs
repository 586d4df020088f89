//! The `mesh` provider block: where the agent is and how to talk to it.

use std::sync::{Arc, RwLock};

use mesh_client::Client;
use tfplug::{AttrPath, Attribute, Block, DataSource, Diagnostics, Resource, Schema, Value};

use crate::util;

/// The configured client, shared by every resource and data source.
#[derive(Default)]
pub struct Shared {
    client: RwLock<Option<Client>>,
}

impl Shared {
    /// The client, or an error diagnostic if the provider is not configured.
    pub fn client(&self, diags: &mut Diagnostics) -> Option<Client> {
        let c = self.client.read().expect("lock").clone();
        if c.is_none() {
            diags.error(
                "Provider not configured",
                "the mesh provider block could not be configured; see earlier errors",
            );
        }
        c
    }
}

/// terraform-provider-mesh.
#[derive(Default)]
pub struct MeshProvider {
    shared: Arc<Shared>,
}

#[tonic::async_trait]
impl tfplug::Provider for MeshProvider {
    fn name(&self) -> &str {
        "mesh"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            Block::new("Talks to a mesh agent's HTTP API (Consul-compatible).")
                .attr(Attribute::string("address").describe(
                    "Agent HTTP address, `host:port` or `http://host:port`. Default: `MESH_HTTP_ADDR`, then `127.0.0.1:8500`.",
                ))
                .attr(Attribute::string("token").sensitive().describe("ACL token sent as `X-Consul-Token`. Default: `MESH_HTTP_TOKEN`."))
                .attr(Attribute::string("ca_file").describe("CA certificates (PEM) to verify an `https://` agent address with, instead of the system's roots. Default: `MESH_CACERT`."))
                .attr(Attribute::string("datacenter").describe("Datacenter to address (`?dc=`); default: the agent's.")),
        )
    }

    fn resources(&self) -> Vec<Arc<dyn Resource>> {
        let s = &self.shared;
        vec![
            Arc::new(crate::service::ServiceResource(s.clone())),
            Arc::new(crate::config_entry::ConfigEntryResource(s.clone())),
            Arc::new(crate::gateways::GatewayResource::ingress(s.clone())),
            Arc::new(crate::gateways::GatewayResource::terminating(s.clone())),
            Arc::new(crate::kv::KvResource(s.clone())),
            Arc::new(crate::key_prefix::KeyPrefixResource(s.clone())),
            Arc::new(crate::keys::KeysResource(s.clone())),
            Arc::new(crate::prepared_query::PreparedQueryResource(s.clone())),
            Arc::new(crate::intention::IntentionResource(s.clone())),
            Arc::new(crate::ca_config::CaConfigResource(s.clone())),
            Arc::new(crate::acl::AclPolicyResource(s.clone())),
            Arc::new(crate::acl::AclTokenResource(s.clone())),
            Arc::new(crate::acl_roles::AclRoleResource(s.clone())),
            Arc::new(crate::acl_roles::AclAuthMethodResource(s.clone())),
            Arc::new(crate::acl_roles::AclBindingRuleResource(s.clone())),
        ]
    }

    fn data_sources(&self) -> Vec<Arc<dyn DataSource>> {
        crate::data::all(&self.shared)
    }

    async fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        if let Some(addr) = config.get("address").as_str() {
            if let Err(e) = Client::new(addr) {
                diags.attr_error(
                    AttrPath::attr("address"),
                    "Invalid agent address",
                    e.to_string(),
                );
            }
        }
    }

    async fn configure(&self, config: &Value, diags: &mut Diagnostics) {
        let addr = config
            .get("address")
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(mesh_client::env_addr);
        let client = match Client::new(&addr) {
            Ok(c) => c,
            Err(e) => {
                return diags.attr_error(
                    AttrPath::attr("address"),
                    "Invalid agent address",
                    e.to_string(),
                )
            }
        };
        let ca_file = config
            .get("ca_file")
            .as_str()
            .map(std::path::PathBuf::from)
            .or_else(mesh_client::env_ca_file);
        let client = match ca_file {
            Some(ca) if client.base_url().scheme() == "http" => {
                // Never let a user believe traffic is verified when it is not.
                diags.attr_warning(
                    AttrPath::attr("ca_file"),
                    "ca_file is not used",
                    format!("the address is plain http://, so there is no certificate to verify; use https:// with the agent's HTTPS port to have {} checked", ca.display()),
                );
                client
            }
            Some(ca) => match client.with_ca_file(&ca) {
                Ok(c) => c,
                Err(e) => {
                    return diags.attr_error(
                        AttrPath::attr("ca_file"),
                        "Unusable CA file",
                        e.to_string(),
                    )
                }
            },
            None => client,
        };
        let token = config
            .get("token")
            .as_str()
            .map(str::to_string)
            .or_else(mesh_client::env_token);
        let client = client
            .with_token(token)
            .with_owner(Some(util::OWNER.to_string()))
            .with_datacenter(config.get("datacenter").as_str().map(str::to_string));
        // Fail here, on `address`, rather than on every resource.
        if let Err(e) = client.status_leader().await {
            if matches!(
                e,
                mesh_client::Error::Connect { .. } | mesh_client::Error::Http { .. }
            ) {
                return diags.attr_error(
                    AttrPath::attr("address"),
                    "Cannot reach the mesh agent",
                    e.to_string(),
                );
            }
        }
        *self.shared.client.write().expect("lock") = Some(client);
    }
}
