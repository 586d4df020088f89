//! `/v1/acl`: bootstrap, policies and tokens, as JSON values in Consul's shapes.

use reqwest::Method;
use serde_json::Value;

use crate::{Client, QueryOptions, Result};

impl Client {
    /// `PUT /v1/acl/bootstrap`: the one-time management token.
    pub async fn acl_bootstrap(&self) -> Result<Value> {
        let url = self.url(&["acl", "bootstrap"]);
        let resp = self.send_json(Method::PUT, url, None).await?;
        self.json(resp).await
    }

    /// `PUT /v1/acl/policy` (create) or `PUT /v1/acl/policy/<id>` (update)
    /// with {Name, Description, Rules, Datacenters}; the stored policy.
    pub async fn acl_policy_write(&self, id: Option<&str>, body: &Value) -> Result<Value> {
        let url = match id {
            Some(id) => self.url(&["acl", "policy", id]),
            None => self.url(&["acl", "policy"]),
        };
        let resp = self.send_json(Method::PUT, url, Some(body)).await?;
        self.json(resp).await
    }

    /// `GET /v1/acl/policy/<id>`; `None` if there is none.
    pub async fn acl_policy_read(&self, id: &str) -> Result<Option<Value>> {
        let url = self.url(&["acl", "policy", id]);
        Ok(self.read(url, &QueryOptions::default()).await?.0)
    }

    /// `GET /v1/acl/policy/name/<name>`; `None` if there is none.
    pub async fn acl_policy_read_by_name(&self, name: &str) -> Result<Option<Value>> {
        let url = self.url(&["acl", "policy", "name", name]);
        Ok(self.read(url, &QueryOptions::default()).await?.0)
    }

    /// `GET /v1/acl/policies`.
    pub async fn acl_policies(&self) -> Result<Vec<Value>> {
        let url = self.url(&["acl", "policies"]);
        Ok(self
            .read(url, &QueryOptions::default())
            .await?
            .0
            .unwrap_or_default())
    }

    /// `DELETE /v1/acl/policy/<id>`.
    pub async fn acl_policy_delete(&self, id: &str) -> Result<()> {
        self.send(Method::DELETE, self.url(&["acl", "policy", id]))
            .await?;
        Ok(())
    }

    /// `PUT /v1/acl/token` (create) or `PUT /v1/acl/token/<accessor>`
    /// (update) with {Description, Policies, Local[, AccessorID, SecretID]};
    /// the stored token, secret included.
    pub async fn acl_token_write(&self, accessor: Option<&str>, body: &Value) -> Result<Value> {
        let url = match accessor {
            Some(a) => self.url(&["acl", "token", a]),
            None => self.url(&["acl", "token"]),
        };
        let resp = self.send_json(Method::PUT, url, Some(body)).await?;
        self.json(resp).await
    }

    /// `GET /v1/acl/token/<accessor>`; `None` if there is none.
    pub async fn acl_token_read(&self, accessor: &str) -> Result<Option<Value>> {
        let url = self.url(&["acl", "token", accessor]);
        Ok(self.read(url, &QueryOptions::default()).await?.0)
    }

    /// `GET /v1/acl/token/self`: the token this client sends.
    pub async fn acl_token_self(&self) -> Result<Value> {
        let resp = self
            .send(Method::GET, self.url(&["acl", "token", "self"]))
            .await?;
        self.json(resp).await
    }

    /// `GET /v1/acl/tokens`.
    pub async fn acl_tokens(&self) -> Result<Vec<Value>> {
        let url = self.url(&["acl", "tokens"]);
        Ok(self
            .read(url, &QueryOptions::default())
            .await?
            .0
            .unwrap_or_default())
    }

    /// `DELETE /v1/acl/token/<accessor>`.
    pub async fn acl_token_delete(&self, accessor: &str) -> Result<()> {
        self.send(Method::DELETE, self.url(&["acl", "token", accessor]))
            .await?;
        Ok(())
    }
}
