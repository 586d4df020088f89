//! The traits a provider implements: one `Provider`, its `Resource`s and
//! `DataSource`s. The server maps protocol calls onto them.

use std::sync::Arc;

use crate::diag::Diagnostics;
use crate::plan::Plan;
use crate::schema::Schema;
use crate::value::Value;

/// A Terraform provider: its configuration and the types it serves.
#[tonic::async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Provider name, the prefix of every type name (e.g. `mesh`).
    fn name(&self) -> &str;
    /// Schema of the `provider` block.
    fn schema(&self) -> Schema;
    /// Managed resource types.
    fn resources(&self) -> Vec<Arc<dyn Resource>>;
    /// Data source types.
    fn data_sources(&self) -> Vec<Arc<dyn DataSource>>;
    /// Extra checks on the provider configuration (validators already ran).
    async fn validate(&self, _config: &Value, _diags: &mut Diagnostics) {}
    /// Configures the provider; called once before any resource operation.
    async fn configure(&self, config: &Value, diags: &mut Diagnostics);
    /// Asks in-flight operations to stop.
    async fn stop(&self) {}
}

/// A managed resource type.
#[tonic::async_trait]
pub trait Resource: Send + Sync + 'static {
    /// Full type name, e.g. `mesh_service`.
    fn type_name(&self) -> &str;
    /// Its schema.
    fn schema(&self) -> Schema;
    /// Extra checks on configuration (validators already ran).
    async fn validate(&self, _config: &Value, _diags: &mut Diagnostics) {}
    /// Adjusts the generic plan (e.g. normalisation, cross-field checks).
    async fn modify_plan(
        &self,
        _prior: &Value,
        _config: &Value,
        _plan: &mut Plan,
        _diags: &mut Diagnostics,
    ) {
    }
    /// Checks a planned destroy (`prior` is the state); errors stop the plan.
    async fn plan_destroy(&self, _prior: &Value, _diags: &mut Diagnostics) {}
    /// Creates the object; returns the new state (no unknowns). `config` carries write-only values.
    async fn create(&self, planned: &Value, config: &Value, diags: &mut Diagnostics) -> Value;
    /// Reads the object; `Value::Null` means it is gone.
    async fn read(&self, state: &Value, diags: &mut Diagnostics) -> Value;
    /// Updates the object in place; returns the new state. By default the
    /// same as `create`, which suits APIs whose writes are upserts.
    async fn update(
        &self,
        _prior: &Value,
        planned: &Value,
        config: &Value,
        diags: &mut Diagnostics,
    ) -> Value {
        self.create(planned, config, diags).await
    }
    /// Deletes the object.
    async fn delete(&self, prior: &Value, diags: &mut Diagnostics);
    /// State for `terraform import ID`, enough for `read` to fill the rest.
    async fn import(&self, id: &str, diags: &mut Diagnostics) -> Value;
    /// Upgrades JSON state written by schema `version` (default: same shape).
    fn upgrade(&self, _version: i64, json: &serde_json::Value, diags: &mut Diagnostics) -> Value {
        match Value::from_json(json, &self.schema().block.ty()) {
            Ok(v) => v,
            Err(e) => {
                diags.error("Cannot read stored state", e.to_string());
                Value::Null
            }
        }
    }
}

/// A data source type.
#[tonic::async_trait]
pub trait DataSource: Send + Sync + 'static {
    /// Full type name, e.g. `mesh_nodes`.
    fn type_name(&self) -> &str;
    /// Its schema.
    fn schema(&self) -> Schema;
    /// Extra checks on configuration.
    async fn validate(&self, _config: &Value, _diags: &mut Diagnostics) {}
    /// Reads the data; returns the full object (no unknowns).
    async fn read(&self, config: &Value, diags: &mut Diagnostics) -> Value;
}
