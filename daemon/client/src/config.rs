//! `/v1/config`: config entries as JSON.

use reqwest::{Method, Response, Url};
use serde_json::Value;

use crate::{Client, QueryOptions, Result};

impl Client {
    /// `GET /v1/config/<kind>/<name>`, or `None` when it does not exist.
    pub async fn config_get(
        &self,
        kind: &str,
        name: &str,
        opts: &QueryOptions,
    ) -> Result<Option<Value>> {
        let url = self.url(&["config", kind, name]);
        Ok(self.read(url, opts).await?.0)
    }

    /// `GET /v1/config/<kind>`: every entry of a kind.
    pub async fn config_list(&self, kind: &str, opts: &QueryOptions) -> Result<Vec<Value>> {
        let url = self.url(&["config", kind]);
        Ok(self.read(url, opts).await?.0.unwrap_or_default())
    }

    /// `PUT /v1/config` with the entry (Kind and Name inside the body).
    pub async fn config_put(&self, entry: &Value) -> Result<()> {
        let url = self.url(&["config"]);
        self.send_json(Method::PUT, url, Some(entry)).await?;
        Ok(())
    }

    /// `DELETE /v1/config/<kind>/<name>`.
    pub async fn config_delete(&self, kind: &str, name: &str) -> Result<()> {
        let url = self.url(&["config", kind, name]);
        self.send(Method::DELETE, url).await?;
        Ok(())
    }

    /// Sends an optional JSON body; fails on non-2xx with the agent's message.
    pub(crate) async fn send_json(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Response> {
        let mut req = self.request(method, url);
        if let Some(body) = body {
            req = req.json(body);
        }
        self.check(self.execute(req).await?).await
    }
}
