//! `/v1/catalog/*`: agent-independent registrations and reads, as JSON in
//! Consul's shape (the Terraform provider maps them to its schema).

use reqwest::Method;
use serde_json::Value;

use crate::{Client, QueryOptions, Result};

impl Client {
    /// `PUT /v1/catalog/register` with a Consul-shaped body (Node, Address, Service, Checks).
    pub async fn catalog_register(&self, body: &Value) -> Result<()> {
        let url = self.url(&["catalog", "register"]);
        self.send_json(Method::PUT, url, Some(body)).await?;
        Ok(())
    }

    /// `PUT /v1/catalog/deregister` with {Node, ServiceID?, CheckID?}.
    pub async fn catalog_deregister(&self, body: &Value) -> Result<()> {
        let url = self.url(&["catalog", "deregister"]);
        self.send_json(Method::PUT, url, Some(body)).await?;
        Ok(())
    }

    /// `GET /v1/catalog/service/<name>`: every instance (empty when none).
    pub async fn catalog_service(&self, name: &str, opts: &QueryOptions) -> Result<Vec<Value>> {
        let url = self.url(&["catalog", "service", name]);
        Ok(self.read(url, opts).await?.0.unwrap_or_default())
    }

    /// `GET /v1/catalog/node/<node>`: {Node, Services}, or `None` when the node is unknown.
    pub async fn catalog_node(&self, node: &str, opts: &QueryOptions) -> Result<Option<Value>> {
        let url = self.url(&["catalog", "node", node]);
        Ok(self.read(url, opts).await?.0)
    }

    /// `GET /v1/catalog/nodes`.
    pub async fn catalog_nodes(&self, opts: &QueryOptions) -> Result<Vec<Value>> {
        let url = self.url(&["catalog", "nodes"]);
        Ok(self.read(url, opts).await?.0.unwrap_or_default())
    }

    /// `GET /v1/catalog/services`: service name → tags.
    pub async fn catalog_services(
        &self,
        opts: &QueryOptions,
    ) -> Result<serde_json::Map<String, Value>> {
        let url = self.url(&["catalog", "services"]);
        Ok(self.read(url, opts).await?.0.unwrap_or_default())
    }
}

impl Client {
    /// `GET /v1/health/node/<node>`: the node's checks (empty when none).
    pub async fn health_node(&self, node: &str, opts: &QueryOptions) -> Result<Vec<Value>> {
        let url = self.url(&["health", "node", node]);
        Ok(self.read(url, opts).await?.0.unwrap_or_default())
    }
}
