//! Untyped calls for endpoints without a typed wrapper yet: a `/v1` path,
//! query pairs and JSON (or raw bytes) in and out.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::{Client, Error, Result};

impl Client {
    fn raw_url(&self, path: &str, query: &[(&str, &str)]) -> reqwest::Url {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut url = self.url(&segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// `GET /v1/<path>`; 404 is `Ok(None)`.
    pub async fn get_json(&self, path: &str, query: &[(&str, &str)]) -> Result<Option<Value>> {
        let resp = self
            .execute(self.request(Method::GET, self.raw_url(path, query)))
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.check(resp).await?;
        Ok(Some(self.json(resp).await?))
    }

    /// `GET /v1/<path>` whose body is read as it arrives (`/v1/agent/monitor`).
    pub async fn get_stream(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<reqwest::Response> {
        let resp = self
            .execute(self.request(Method::GET, self.raw_url(path, query)))
            .await?;
        self.check(resp).await
    }

    /// A blocking `GET /v1/<path>` (`opts.index`, `opts.wait`): the answer
    /// (`None` on 404) and the index to block on next.
    pub async fn get_json_blocking(
        &self,
        path: &str,
        query: &[(&str, &str)],
        opts: &crate::QueryOptions,
    ) -> Result<(Option<Value>, crate::QueryMeta)> {
        self.read(self.raw_url(path, query), opts).await
    }

    /// `GET /v1/<path>` whose answer is JSON whatever the status (as
    /// autopilot's health, 429 when unhealthy): the status and the body.
    pub async fn get_json_with_status(&self, path: &str) -> Result<(u16, Value)> {
        let resp = self
            .execute(self.request(Method::GET, self.raw_url(path, &[])))
            .await?;
        let status = resp.status().as_u16();
        if resp.status().is_server_error() || resp.status() == StatusCode::FORBIDDEN {
            self.check(resp).await?;
            unreachable!("check refuses non-2xx answers");
        }
        Ok((status, self.json(resp).await?))
    }

    /// A write (`PUT`, `POST`, `DELETE`) with an optional JSON body; an
    /// empty answer is `Value::Null`.
    pub async fn write_json(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value> {
        let mut req = self.request(method, self.raw_url(path, query));
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = self.check(self.execute(req).await?).await?;
        let url = resp.url().to_string();
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(&e))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
            url,
            reason: e.to_string(),
        })
    }

    /// A write whose body is raw bytes (an event's payload); the answer as JSON.
    pub async fn write_bytes(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Value> {
        let req = self.request(method, self.raw_url(path, query)).body(body);
        let resp = self.check(self.execute(req).await?).await?;
        let url = resp.url().to_string();
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(&e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
            url,
            reason: e.to_string(),
        })
    }

    /// `GET /v1/<path>` as bytes (snapshots).
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>> {
        let resp = self.send(Method::GET, self.raw_url(path, &[])).await?;
        Ok(resp
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e))?
            .to_vec())
    }

    /// `PUT /v1/<path>` with a raw body (snapshot restore).
    pub async fn put_bytes(&self, path: &str, body: Vec<u8>) -> Result<()> {
        let req = self
            .request(Method::PUT, self.raw_url(path, &[]))
            .body(body);
        self.check(self.execute(req).await?).await?;
        Ok(())
    }
}
