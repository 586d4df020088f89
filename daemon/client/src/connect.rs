//! `/v1/connect/*`: intentions and the CA, as JSON.

use reqwest::Method;
use serde_json::Value;

use crate::{Client, QueryOptions, Result};

impl Client {
    fn intention_url(&self, source: &str, destination: &str) -> reqwest::Url {
        let mut url = self.url(&["connect", "intentions", "exact"]);
        url.query_pairs_mut()
            .append_pair("source", source)
            .append_pair("destination", destination);
        url
    }

    /// `GET /v1/connect/intentions/exact?source=&destination=`, `None` when absent.
    pub async fn intention_get(&self, source: &str, destination: &str) -> Result<Option<Value>> {
        let url = self.intention_url(source, destination);
        Ok(self.read(url, &QueryOptions::default()).await?.0)
    }

    /// `PUT /v1/connect/intentions/exact?source=&destination=` with {Action|Permissions, Description, Meta}.
    pub async fn intention_put(&self, source: &str, destination: &str, body: &Value) -> Result<()> {
        let url = self.intention_url(source, destination);
        self.send_json(Method::PUT, url, Some(body)).await?;
        Ok(())
    }

    /// `DELETE /v1/connect/intentions/exact?source=&destination=`.
    pub async fn intention_delete(&self, source: &str, destination: &str) -> Result<()> {
        let url = self.intention_url(source, destination);
        self.send(Method::DELETE, url).await?;
        Ok(())
    }

    /// `GET /v1/connect/ca/configuration`.
    pub async fn ca_config_get(&self) -> Result<Option<Value>> {
        let url = self.url(&["connect", "ca", "configuration"]);
        Ok(self.read(url, &QueryOptions::default()).await?.0)
    }

    /// `PUT /v1/connect/ca/configuration` with {Provider, Config}; the agent's answer
    /// (mesh: `{"Rotating": bool}`; Consul: empty, returned as null).
    pub async fn ca_config_put(&self, body: &Value) -> Result<Value> {
        let url = self.url(&["connect", "ca", "configuration"]);
        let resp = self.send_json(Method::PUT, url, Some(body)).await?;
        let text = resp.text().await.unwrap_or_default();
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `GET /v1/connect/ca/rotation`: the staged rotation's state.
    pub async fn ca_rotation(&self) -> Result<Option<Value>> {
        let url = self.url(&["connect", "ca", "rotation"]);
        Ok(self.read(url, &QueryOptions::default()).await?.0)
    }

    /// `GET /v1/connect/ca/roots`.
    pub async fn ca_roots(&self, opts: &QueryOptions) -> Result<Option<Value>> {
        let url = self.url(&["connect", "ca", "roots"]);
        Ok(self.read(url, opts).await?.0)
    }
}
