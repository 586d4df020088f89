//! `/v1/session` and KV locks (`?acquire=`, `?release=`).

use reqwest::Method;
use serde_json::Value;

use crate::{Client, Error, Result};

impl Client {
    /// `PUT /v1/session/create`: the new session's ID.
    pub async fn session_create(&self, body: &Value) -> Result<String> {
        let created = self
            .write_json(Method::PUT, "session/create", &[], Some(body))
            .await?;
        created["ID"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Decode {
                url: "session/create".into(),
                reason: "no ID in the answer".into(),
            })
    }

    /// `PUT /v1/session/renew/<id>`: `false` when the session is gone.
    pub async fn session_renew(&self, id: &str) -> Result<bool> {
        let url = self.url(&["session", "renew", id]);
        let resp = self.execute(self.request(Method::PUT, url)).await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(false);
        }
        self.check(resp).await?;
        Ok(true)
    }

    /// `PUT /v1/session/destroy/<id>`.
    pub async fn session_destroy(&self, id: &str) -> Result<()> {
        let url = self.url(&["session", "destroy", id]);
        self.send(Method::PUT, url).await?;
        Ok(())
    }

    /// `PUT /v1/kv/<key>?acquire=<session>` (`release` false) or
    /// `?release=` (true): whether it took effect.
    pub async fn kv_lock(
        &self,
        key: &str,
        value: impl Into<Vec<u8>>,
        session: &str,
        release: bool,
    ) -> Result<bool> {
        let mut url = self.kv_url(key);
        let verb = if release { "release" } else { "acquire" };
        url.query_pairs_mut().append_pair(verb, session);
        let req = self.request(Method::PUT, url).body(value.into());
        let resp = self.check(self.execute(req).await?).await?;
        self.json(resp).await
    }
}
