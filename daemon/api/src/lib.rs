//! The Consul-compatible HTTP API under `/v1`: routes, blocking queries,
//! consistency modes and Consul's error conventions.

#![forbid(unsafe_code)]

mod acl;
mod acl_auth;
mod acl_caller;
mod acl_check;
mod acl_commands;
mod acl_links;
mod acl_roles;
mod acl_routes;
mod agent;
mod blocking_limit;
mod catalog;
mod config_entries;
mod coordinate;
mod datacenter;
mod declared_view;
mod decoded;
mod error;
mod expression_filter;
mod forward;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod health;
mod intentions;
mod kv;
mod params;
mod prepared_query;
mod query;
mod session;
mod snapshot;
mod status;
mod telemetry;
mod txn;
mod write;

use std::sync::Arc;

use axum::routing::{get, post, put};
use axum::Router;
use futures::future::BoxFuture;
use mesh_raft::RaftNode;
use mesh_state::StateStore;
use serde::Serialize;

pub use acl_caller::{request_secret, resolve_in, AclSettings, Caller};
pub use acl_commands::command_allowed;
pub use agent::AgentStats;
pub use catalog::{connect_instances, connect_instances_by_service};
pub use declared_view::{declared_view, DeclaredView, MAX_VIEW_KEYS};
use decoded::MAX_JSON_BODY_BYTES;
pub use decoded::{read_limited, AgentToken, CheckRegistration, Decoded, ServiceRegistration};
pub use error::ApiError;
/// Consul's JSON shapes, shared with mesh.d and the agent.
pub use mesh_wire as wire;
pub use mesh_wire::intention as intention_wire;
pub use params::Params;
pub use query::{parse_duration, QueryOptions};
pub use write::{owner, takeover, Written};

/// A gossip member as `/v1/agent/members` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct MemberView {
    pub name: String,
    pub addr: String,
    pub port: u16,
    pub tags: std::collections::BTreeMap<String, String>,
    /// Consul's numeric status: 1 alive, 2 leaving, 3 left, 4 failed.
    pub status: u8,
    /// alive, suspect, failed or left.
    pub state: String,
}

/// How large request bodies may be (Consul's `limits` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// `kv_max_value_size`.
    pub kv_max_value_size: usize,
    /// `txn_max_req_len`: every JSON body.
    pub txn_max_req_len: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            kv_max_value_size: mesh_types::MAX_KV_VALUE_BYTES,
            txn_max_req_len: MAX_JSON_BODY_BYTES,
        }
    }
}

/// What the API needs from the agent that hosts it.
pub trait AgentHandle: Send + Sync + 'static {
    /// This agent's node name.
    fn node_name(&self) -> String;
    /// This agent's datacenter.
    fn datacenter(&self) -> String;
    /// This agent's node ID (UUID).
    fn node_id(&self) -> String;
    /// Whether this agent is a server.
    fn is_server(&self) -> bool;
    /// The port xDS is served on, if any.
    fn grpc_port(&self) -> Option<u16> {
        None
    }
    /// The port xDS over TLS is served on, if any.
    fn grpc_tls_port(&self) -> Option<u16> {
        None
    }
    /// The gossip member list.
    fn members(&self) -> Vec<MemberView>;
    /// This agent's network coordinate (`/v1/agent/self` `Coord`).
    fn coordinate(&self) -> Option<mesh_types::Coordinate> {
        None
    }
    /// The API base URL (`http://` or `https://`) of a server to forward
    /// to (client agents).
    fn server_base_url(&self) -> Option<String>;
    /// Leave the cluster gracefully and shut the agent down.
    fn leave(&self) -> BoxFuture<'static, ()>;
    /// The HTTP client for requests to servers (with the agents' CA and
    /// this agent's certificate when TLS is configured).
    fn server_client(&self) -> reqwest::Client {
        reqwest::Client::new()
    }
    /// What intentions default to when none matches (`acl.default_policy`).
    fn intention_default_allow(&self) -> bool {
        true
    }
    /// What only the agent knows, for `/v1/agent/self`'s `Stats`.
    fn stats(&self) -> AgentStats {
        AgentStats::default()
    }
    /// The outcome of the last config reload, for `/v1/agent/self`.
    fn config_status(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// The agent's own metrics, in Prometheus' text format.
    fn metrics_text(&self) -> String {
        String::new()
    }
    /// ACL settings (disabled unless configured).
    fn acl(&self) -> AclSettings {
        AclSettings::default()
    }
    /// The name of a service registered on this agent, by ID.
    fn local_service_name(&self, _id: &str) -> Option<String> {
        None
    }
    /// The service a proxy registered on this agent stands for, by the proxy's ID.
    fn local_proxy_destination(&self, _id: &str) -> Option<String> {
        None
    }
    /// The service a check registered on this agent belongs to, if any.
    fn local_check_service(&self, _check_id: &str) -> Option<String> {
        None
    }
    /// `limits { kv_max_value_size txn_max_req_len }`.
    fn body_limits(&self) -> BodyLimits {
        BodyLimits::default()
    }
    /// Whether a client agent may forward one more request to a server now
    /// (`limits.rpc_rate`).
    fn rpc_permit(&self) -> bool {
        true
    }
    /// `limits.http_max_blocking_queries_per_client`.
    fn max_blocking_queries_per_client(&self) -> u32 {
        1024
    }
    /// The CA's trust domain, once the CA exists.
    fn trust_domain(&self) -> Option<String> {
        None
    }
}

/// Everything a handler can reach. One `Arc`: axum clones the state of
/// every middleware layer for every request, so a clone must be cheap.
#[derive(Clone)]
pub struct Api(Arc<ApiInner>);

/// What [`Api`] holds.
pub struct ApiInner {
    pub(crate) raft: Option<RaftNode>,
    pub(crate) state: Arc<StateStore>,
    pub(crate) agent: Arc<dyn AgentHandle>,
    pub(crate) http: reqwest::Client,
    pub(crate) renders: query::RenderCache,
    pub(crate) acl_cache: acl_caller::CallerCache,
    pub(crate) parked: blocking_limit::Parked,
}

impl std::ops::Deref for Api {
    type Target = ApiInner;
    fn deref(&self) -> &ApiInner {
        &self.0
    }
}

impl Api {
    /// The API of a server (`raft` set) or a client agent (`raft` none: requests that
    /// need the catalog are forwarded to a server).
    pub fn new(
        raft: Option<RaftNode>,
        state: Arc<StateStore>,
        agent: Arc<dyn AgentHandle>,
    ) -> Self {
        // reqwest is built with rustls and no default crypto provider: use ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Api(Arc::new(ApiInner {
            raft,
            state,
            http: agent.server_client(),
            agent,
            renders: Default::default(),
            acl_cache: Default::default(),
            parked: Default::default(),
        }))
    }

    /// All `/v1` routes answered here; `extra` adds the agent's own, and
    /// `cluster_extra` routes that client agents forward to a server.
    pub fn router(self, extra: Router<Api>, cluster_extra: Router<Api>) -> Router {
        let cluster = Router::new()
            .route("/v1/status/leader", get(status::leader))
            .route("/v1/status/peers", get(status::peers))
            .route(
                "/v1/operator/raft/configuration",
                get(status::raft_configuration),
            )
            .route("/v1/operator/usage", get(status::usage))
            .route(
                "/v1/kv/{*key}",
                get(kv::get).put(kv::put).delete(kv::delete),
            )
            .route("/v1/kv/", get(kv::get_root))
            .route("/v1/txn", put(txn::txn))
            .route("/v1/session/create", put(session::create))
            .route("/v1/session/destroy/{id}", put(session::destroy))
            .route("/v1/session/renew/{id}", put(session::renew))
            .route("/v1/session/info/{id}", get(session::info))
            .route("/v1/session/node/{node}", get(session::node))
            .route("/v1/session/list", get(session::list))
            .route("/v1/coordinate/datacenters", get(coordinate::datacenters))
            .route("/v1/coordinate/nodes", get(coordinate::nodes))
            .route("/v1/coordinate/node/{node}", get(coordinate::node))
            .route("/v1/coordinate/update", put(coordinate::update))
            .route(
                "/v1/query",
                get(prepared_query::list).post(prepared_query::create),
            )
            .route(
                "/v1/query/{id}",
                get(prepared_query::get_one)
                    .put(prepared_query::update)
                    .delete(prepared_query::delete),
            )
            .route("/v1/query/{id}/execute", get(prepared_query::execute))
            .route("/v1/query/{id}/explain", get(prepared_query::explain))
            .route("/v1/catalog/register", put(catalog::register))
            .route("/v1/catalog/deregister", put(catalog::deregister))
            .route("/v1/catalog/nodes", get(catalog::nodes))
            .route("/v1/catalog/services", get(catalog::services))
            .route("/v1/internal/ui/services", get(health::ui_services))
            .route("/v1/catalog/service/{name}", get(catalog::service))
            .route("/v1/catalog/connect/{name}", get(catalog::connect))
            .route(
                "/v1/catalog/gateway-services/{gateway}",
                get(catalog::gateway_services),
            )
            .route("/v1/catalog/node/{name}", get(catalog::node))
            .route("/v1/catalog/datacenters", get(catalog::datacenters))
            .route("/v1/health/service/{name}", get(health::service))
            .route("/v1/health/connect/{name}", get(health::connect))
            .route("/v1/health/ingress/{name}", get(health::ingress))
            .route("/v1/health/node/{name}", get(health::node))
            .route("/v1/health/checks/{service}", get(health::checks))
            .route("/v1/health/state/{state}", get(health::state))
            .route(
                "/v1/discovery-chain/{service}",
                get(config_entries::discovery_chain),
            )
            .route("/v1/config", put(config_entries::put))
            .route("/v1/config/{kind}", get(config_entries::list))
            .route(
                "/v1/config/{kind}/{name}",
                get(config_entries::get).delete(config_entries::delete),
            )
            .route(
                "/v1/connect/intentions",
                get(intentions::list).post(intentions::create),
            )
            .route(
                "/v1/connect/intentions/exact",
                get(intentions::get_exact)
                    .put(intentions::put_exact)
                    .delete(intentions::delete_exact),
            )
            .route("/v1/connect/intentions/check", get(intentions::check))
            .route("/v1/connect/intentions/match", get(intentions::matches))
            .route(
                "/v1/connect/intentions/{id}",
                get(intentions::get_id).delete(intentions::delete_id),
            )
            .route("/v1/agent/connect/authorize", post(intentions::authorize))
            .route("/v1/snapshot", get(snapshot::save).put(snapshot::restore))
            .route("/v1/internal/mesh.d/view", post(declared_view::handler))
            .route("/v1/acl/bootstrap", put(acl::bootstrap))
            .route("/v1/acl/policy", put(acl::policy_create))
            .route(
                "/v1/acl/policy/{id}",
                get(acl::policy_get)
                    .put(acl::policy_update)
                    .delete(acl::policy_delete),
            )
            .route("/v1/acl/policy/name/{name}", get(acl::policy_by_name))
            .route("/v1/acl/policies", get(acl::policies))
            .route("/v1/acl/token", put(acl::token_create))
            .route("/v1/acl/token/self", get(acl::token_self))
            .route(
                "/v1/acl/token/{accessor}",
                get(acl::token_get)
                    .put(acl::token_update)
                    .delete(acl::token_delete),
            )
            .route("/v1/acl/token/{accessor}/clone", put(acl::token_clone))
            .route("/v1/acl/tokens", get(acl::tokens))
            .route("/v1/acl/role", put(acl_roles::create))
            .route(
                "/v1/acl/role/{id}",
                get(acl_roles::get)
                    .put(acl_roles::update)
                    .delete(acl_roles::delete),
            )
            .route("/v1/acl/role/name/{name}", get(acl_roles::by_name))
            .route("/v1/acl/roles", get(acl_roles::list))
            .route("/v1/acl/templated-policies", get(acl_roles::templates))
            .route(
                "/v1/acl/templated-policy/name/{*name}",
                get(acl_roles::template),
            )
            .route(
                "/v1/acl/templated-policy/preview/{*name}",
                post(acl_roles::preview),
            )
            .route("/v1/acl/auth-method", put(acl_auth::method_create))
            .route(
                "/v1/acl/auth-method/{name}",
                get(acl_auth::method_get)
                    .put(acl_auth::method_update)
                    .delete(acl_auth::method_delete),
            )
            .route("/v1/acl/auth-methods", get(acl_auth::methods))
            .route("/v1/acl/binding-rule", put(acl_auth::rule_create))
            .route(
                "/v1/acl/binding-rule/{id}",
                get(acl_auth::rule_get)
                    .put(acl_auth::rule_update)
                    .delete(acl_auth::rule_delete),
            )
            .route("/v1/acl/binding-rules", get(acl_auth::rules))
            .route("/v1/acl/login", post(acl_auth::login))
            .route("/v1/acl/logout", post(acl_auth::logout))
            .route("/v1/internal/acl/authorizer", get(acl::resolve))
            .merge(cluster_extra)
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                acl_check::enforce,
            ))
            // Outside the ACL check: a client agent's forwarded request is
            // checked by the server that answers it.
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                forward::to_server_if_client,
            ));
        Router::new()
            .route("/v1/agent/members", get(agent::members))
            .route("/v1/agent/self", get(agent::self_info))
            .route("/v1/agent/metrics", get(agent::metrics))
            .route("/v1/agent/monitor", get(agent::monitor))
            .route("/v1/agent/leave", put(agent::leave))
            .merge(extra)
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                acl_check::enforce,
            ))
            .merge(cluster)
            // Every other body read whole: the JSON limit (txn_max_req_len).
            .layer(axum::extract::DefaultBodyLimit::max(
                self.agent.body_limits().txn_max_req_len,
            ))
            .layer(axum::middleware::from_fn(expression_filter::apply))
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                datacenter::only_local,
            ))
            .route_layer(axum::middleware::from_fn(telemetry::track))
            .with_state(self)
    }
}
