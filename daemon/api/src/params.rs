//! Query parameters: Consul repeats some (`?tag=a&tag=b`).

use std::collections::HashMap;

/// All query parameters, keeping repeated ones, and the request's path.
#[derive(Debug, Default, Clone)]
pub struct Params {
    pub pairs: Vec<(String, String)>,
    pub path: String,
}

/// Parameters that change how long or where a read waits, never what it
/// answers.
const NOT_IN_ANSWER: [&str; 4] = ["index", "wait", "stale", "consistent"];

impl Params {
    pub fn map(&self) -> HashMap<String, String> {
        self.pairs.iter().cloned().collect()
    }
    /// What identifies the answer of a read: the path and every parameter
    /// but the blocking and consistency ones, in a canonical order.
    pub fn answer_key(&self) -> String {
        let mut pairs: Vec<&(String, String)> = self
            .pairs
            .iter()
            .filter(|(k, _)| !NOT_IN_ANSWER.contains(&k.as_str()))
            .collect();
        pairs.sort();
        // Every part is length-prefixed: decoded values may hold any byte,
        // so no separator alone could keep two requests' keys apart.
        let mut key = format!("{}:{}", self.path.len(), self.path);
        for (k, v) in pairs {
            key.push_str(&format!("&{}:{}={}:{}", k.len(), k, v.len(), v));
        }
        key
    }
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub fn has(&self, name: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == name)
    }
    /// `?node-meta=key:value` filters.
    pub fn node_meta(&self) -> Vec<(String, String)> {
        self.all("node-meta")
            .into_iter()
            .map(|kv| match kv.split_once(':') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.to_string(), String::new()),
            })
            .collect()
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Params {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        Ok(Params {
            pairs: form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            path: parts.uri.path().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(path: &str, pairs: &[(&str, &str)]) -> Params {
        Params {
            pairs: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            path: path.to_string(),
        }
    }

    #[test]
    fn answer_key_ignores_blocking_and_order_but_not_filters() {
        let a = params("/v1/health/service/web", &[("passing", ""), ("tag", "a")]);
        let b = params(
            "/v1/health/service/web",
            &[
                ("index", "7"),
                ("tag", "a"),
                ("wait", "5s"),
                ("passing", ""),
                ("stale", ""),
            ],
        );
        assert_eq!(a.answer_key(), b.answer_key());
        let other_tag = params("/v1/health/service/web", &[("passing", ""), ("tag", "b")]);
        assert_ne!(a.answer_key(), other_tag.answer_key());
        let other_path = params("/v1/health/service/api", &[("passing", ""), ("tag", "a")]);
        assert_ne!(a.answer_key(), other_path.answer_key());
        // A value cannot be crafted to look like another parameter.
        let x = params("/p", &[("a", "1\0b=2")]);
        let y = params("/p", &[("a", "1"), ("b", "2")]);
        assert_ne!(x.answer_key(), y.answer_key());
    }
}
