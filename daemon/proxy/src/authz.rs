//! Intention enforcement: per connection (L4) and per request (L7).
//!
//! Rules are compiled once per snapshot (sorted, regexes built), so the hot
//! path only compares strings.

use std::fmt;

use regex::Regex;

use crate::snapshot::{Action, HeaderMatch, HttpMatch, Intentions, Protocol};

/// The outcome of an authorization, with the reason for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the connection or request may proceed.
    pub allow: bool,
    /// Which rule decided (`intention <id>`) or `default allow|deny`.
    pub reason: String,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.allow { "allowed" } else { "denied" };
        write!(f, "{what} by {}", self.reason)
    }
}

/// Intentions compiled for fast evaluation.
#[derive(Debug, Clone)]
pub struct Policy {
    default_allow: bool,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    id: String,
    source: String,
    action: Action,
    permissions: Vec<Permission>,
}

#[derive(Debug, Clone)]
struct Permission {
    action: Action,
    http: Option<Http>,
}

#[derive(Debug, Clone)]
struct Http {
    path_exact: Option<String>,
    path_prefix: Option<String>,
    path_regex: Option<Matcher>,
    methods: Vec<String>,
    headers: Vec<Header>,
}

#[derive(Debug, Clone)]
struct Header {
    name: String,
    exact: Option<String>,
    prefix: Option<String>,
    suffix: Option<String>,
    regex: Option<Matcher>,
    invert: bool,
}

/// A compiled regex, or the fact that it did not compile (fails closed).
#[derive(Debug, Clone)]
enum Matcher {
    Ok(Regex),
    Invalid,
}

impl Matcher {
    fn new(re: &str) -> Self {
        match Regex::new(&format!("^(?:{re})$")) {
            Ok(r) => Matcher::Ok(r),
            Err(e) => {
                tracing::warn!(regex = re, error = %e, "invalid regex in intention; it matches nothing and its permission denies");
                Matcher::Invalid
            }
        }
    }
}

/// The parts of an HTTP request that permissions look at.
pub trait RequestView {
    /// Request path, without the query.
    fn path(&self) -> &str;
    /// Request method, upper case.
    fn method(&self) -> &str;
    /// All values of a header (name is lower case).
    fn header_values(&self, name: &str) -> Vec<&str>;
}

impl Policy {
    /// Compiles intentions; rules are sorted by precedence, exact sources first on ties.
    pub fn compile(intentions: &Intentions) -> Self {
        let mut sorted: Vec<_> = intentions.rules.iter().collect();
        sorted.sort_by(|a, b| {
            b.precedence
                .cmp(&a.precedence)
                .then_with(|| (a.source == "*").cmp(&(b.source == "*")))
        });
        let rules = sorted
            .into_iter()
            .map(|r| Rule {
                id: if r.id.is_empty() {
                    format!("{} => (this service)", r.source)
                } else {
                    r.id.clone()
                },
                source: r.source.clone(),
                action: r.action,
                permissions: r
                    .permissions
                    .iter()
                    .map(|p| Permission {
                        action: p.action,
                        http: p.http.as_ref().map(Http::compile),
                    })
                    .collect(),
            })
            .collect();
        Self {
            default_allow: intentions.default_allow,
            rules,
        }
    }

    fn rule_for(&self, source: &str) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|r| r.source == source || r.source == "*")
    }

    fn default_verdict(&self) -> Verdict {
        Verdict {
            allow: self.default_allow,
            reason: if self.default_allow {
                "default allow".into()
            } else {
                "default deny".into()
            },
        }
    }

    /// Decides whether `source` may open a connection on a listener of `protocol`.
    pub fn connection(&self, source: &str, protocol: Protocol) -> Verdict {
        let Some(rule) = self.rule_for(source) else {
            return self.default_verdict();
        };
        if rule.permissions.is_empty() {
            return Verdict {
                allow: rule.action == Action::Allow,
                reason: format!("intention {}", rule.id),
            };
        }
        if protocol.is_l7() {
            // Requests are checked one by one.
            Verdict {
                allow: true,
                reason: format!("intention {} (L7, checked per request)", rule.id),
            }
        } else {
            Verdict {
                allow: false,
                reason: format!("intention {} has L7 permissions on a tcp listener", rule.id),
            }
        }
    }

    /// Decides whether `source` may make this HTTP request.
    pub fn request(&self, source: &str, req: &impl RequestView) -> Verdict {
        let Some(rule) = self.rule_for(source) else {
            return self.default_verdict();
        };
        if rule.permissions.is_empty() {
            return Verdict {
                allow: rule.action == Action::Allow,
                reason: format!("intention {}", rule.id),
            };
        }
        for (i, p) in rule.permissions.iter().enumerate() {
            match p.http.as_ref().map_or(Some(true), |h| h.matches(req)) {
                Some(true) => {
                    return Verdict {
                        allow: p.action == Action::Allow,
                        reason: format!("intention {} permission {i}", rule.id),
                    }
                }
                Some(false) => {}
                None => {
                    return Verdict {
                        allow: false,
                        reason: format!("intention {} permission {i} (invalid regex)", rule.id),
                    }
                }
            }
        }
        let mut v = self.default_verdict();
        v.reason = format!(
            "{} (no permission of intention {} matched)",
            v.reason, rule.id
        );
        v
    }
}

impl Http {
    fn compile(m: &HttpMatch) -> Self {
        Http {
            path_exact: m.path_exact.clone(),
            path_prefix: m.path_prefix.clone(),
            path_regex: m.path_regex.as_deref().map(Matcher::new),
            methods: m.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            headers: m.header.iter().map(Header::compile).collect(),
        }
    }

    /// `None` when an invalid regex was involved.
    fn matches(&self, req: &impl RequestView) -> Option<bool> {
        let path = req.path();
        if self.path_exact.as_ref().is_some_and(|p| p != path)
            || self
                .path_prefix
                .as_ref()
                .is_some_and(|p| !path.starts_with(p.as_str()))
        {
            return Some(false);
        }
        match &self.path_regex {
            Some(Matcher::Invalid) => return None,
            Some(Matcher::Ok(re)) if !re.is_match(path) => return Some(false),
            _ => {}
        }
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == req.method()) {
            return Some(false);
        }
        for h in &self.headers {
            if !h.matches(req)? {
                return Some(false);
            }
        }
        Some(true)
    }
}

impl Header {
    fn compile(h: &HeaderMatch) -> Self {
        Header {
            name: h.name.to_ascii_lowercase(),
            exact: h.exact.clone(),
            prefix: h.prefix.clone(),
            suffix: h.suffix.clone(),
            regex: h.regex.as_deref().map(Matcher::new),
            invert: h.invert,
        }
    }

    fn matches(&self, req: &impl RequestView) -> Option<bool> {
        let values = req.header_values(&self.name);
        let value_ok = |v: &str| -> Option<bool> {
            Some(
                self.exact.as_ref().is_none_or(|e| e == v)
                    && self
                        .prefix
                        .as_ref()
                        .is_none_or(|p| v.starts_with(p.as_str()))
                    && self.suffix.as_ref().is_none_or(|s| v.ends_with(s.as_str()))
                    && match &self.regex {
                        None => true,
                        Some(Matcher::Ok(re)) => re.is_match(v),
                        Some(Matcher::Invalid) => return None,
                    },
            )
        };
        let any_value_matcher = self.exact.is_some()
            || self.prefix.is_some()
            || self.suffix.is_some()
            || self.regex.is_some();
        let hit = if !any_value_matcher {
            // `Present` (or no matcher at all) means the header exists.
            !values.is_empty()
        } else {
            let mut hit = false;
            for v in values {
                if value_ok(v)? {
                    hit = true;
                    break;
                }
            }
            hit
        };
        Some(hit != self.invert)
    }
}

#[cfg(test)]
#[path = "authz_tests.rs"]
mod tests;
