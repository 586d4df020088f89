//! `/v1/kv`: reads return the `X-Consul-Index` alongside the value.

use reqwest::{Method, Url};

use crate::{Client, KvPair, QueryMeta, QueryOptions, Result};

impl Client {
    /// `GET /v1/kv/<key>`: the pair, or `None` when the key does not exist.
    pub async fn kv_get(
        &self,
        key: &str,
        opts: &QueryOptions,
    ) -> Result<(Option<KvPair>, QueryMeta)> {
        let url = self.kv_url(key);
        let (pairs, meta) = self.read::<Vec<KvPair>>(url, opts).await?;
        Ok((pairs.and_then(|p| p.into_iter().next()), meta))
    }

    /// `GET /v1/kv/<prefix>?recurse`: every pair under `prefix` (empty when none).
    pub async fn kv_list(
        &self,
        prefix: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<KvPair>, QueryMeta)> {
        let mut url = self.kv_url(prefix);
        url.query_pairs_mut().append_key_only("recurse");
        let (pairs, meta) = self.read(url, opts).await?;
        Ok((pairs.unwrap_or_default(), meta))
    }

    /// `GET /v1/kv/<prefix>?keys[&separator=]`: key names under `prefix`, folded at `separator`.
    pub async fn kv_keys(
        &self,
        prefix: &str,
        separator: Option<&str>,
        opts: &QueryOptions,
    ) -> Result<(Vec<String>, QueryMeta)> {
        let mut url = self.kv_url(prefix);
        {
            let mut query = url.query_pairs_mut();
            query.append_key_only("keys");
            if let Some(sep) = separator {
                query.append_pair("separator", sep);
            }
        }
        let (keys, meta) = self.read(url, opts).await?;
        Ok((keys.unwrap_or_default(), meta))
    }

    /// `PUT /v1/kv/<key>[?flags=][&cas=]` with `value` as the raw body.
    ///
    /// Returns `false` when a check-and-set did not match (the key was changed,
    /// or for `cas = Some(0)`, already exists).
    pub async fn kv_put(
        &self,
        key: &str,
        value: impl Into<Vec<u8>>,
        flags: Option<u64>,
        cas: Option<u64>,
    ) -> Result<bool> {
        let mut url = self.kv_url(key);
        {
            let mut query = url.query_pairs_mut();
            if let Some(flags) = flags {
                query.append_pair("flags", &flags.to_string());
            }
            if let Some(cas) = cas {
                query.append_pair("cas", &cas.to_string());
            }
        }
        tidy_query(&mut url);
        let req = self.request(Method::PUT, url).body(value.into());
        let resp = self.check(self.execute(req).await?).await?;
        self.json(resp).await
    }

    /// `DELETE /v1/kv/<key>[?recurse][&cas=]`; `false` when a check-and-set did not match.
    pub async fn kv_delete(&self, key: &str, recurse: bool, cas: Option<u64>) -> Result<bool> {
        let mut url = self.kv_url(key);
        {
            let mut query = url.query_pairs_mut();
            if recurse {
                query.append_key_only("recurse");
            }
            if let Some(cas) = cas {
                query.append_pair("cas", &cas.to_string());
            }
        }
        tidy_query(&mut url);
        let resp = self.send(Method::DELETE, url).await?;
        // Consul answers `true`/`false`; an empty body (older agents) means done.
        let text = resp.text().await.unwrap_or_default();
        Ok(text.trim() != "false")
    }

    /// `/v1/kv/<key>`: each `/`-separated part is percent-encoded; a leading `/` is dropped.
    pub(crate) fn kv_url(&self, key: &str) -> Url {
        let mut url = self.url(&["kv"]);
        url.path_segments_mut()
            .expect("http URLs have a path")
            .extend(key.trim_start_matches('/').split('/'));
        url
    }
}

/// `query_pairs_mut` leaves a bare `?` when nothing was appended.
fn tidy_query(url: &mut Url) {
    if url.query() == Some("") {
        url.set_query(None);
    }
}
