//! Intentions compiled into one decision: whether a source may connect
//! (L4) and whether it may make an HTTP request (L7). The HTTP API's
//! `intention check` and `connect/authorize` and every proxy decide with
//! this one [`Policy`], so they cannot disagree.
//!
//! Rules are compiled once per change (sorted, regexes built), so the hot
//! path only compares strings.

use std::fmt;

use mesh_types::{HeaderMatch, HttpMatch, Intention, IntentionAction};
use regex::Regex;
use serde::{Deserialize, Serialize};

/// The intentions that govern one destination, and the decision when none
/// matches: what a proxy's snapshot carries and what a policy compiles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct IntentionSet {
    /// Decision when no intention matches (the ACL default policy).
    pub default_allow: bool,
    /// Intentions whose destination is this one or `*`, by precedence.
    pub rules: Vec<Intention>,
}

impl Default for IntentionSet {
    fn default() -> Self {
        Self {
            default_allow: true,
            rules: Vec::new(),
        }
    }
}

impl IntentionSet {
    /// The intentions among `all` that govern traffic to `destination`.
    pub fn for_destination<'a>(
        all: impl IntoIterator<Item = &'a Intention>,
        destination: &str,
        default_allow: bool,
    ) -> Self {
        let mut rules: Vec<Intention> = all
            .into_iter()
            .filter(|i| i.destination == destination || i.destination == "*")
            .cloned()
            .collect();
        mesh_types::sort_by_precedence(&mut rules);
        Self {
            default_allow,
            rules,
        }
    }
}

/// Where a decision is made: on a connection of an L4 (tcp) listener, where
/// intentions with HTTP permissions deny as Consul's do, or of an L7
/// (http, http2, grpc) listener, where they are checked per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// Opaque TCP.
    L4,
    /// HTTP-based.
    L7,
}

/// The outcome of an authorization, with the reason for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the connection or request may proceed.
    pub allow: bool,
    /// The intention that decided (`source => destination`), if any; else
    /// the default did.
    pub matched: Option<String>,
    /// A sentence a user can read: which intention or default, and why.
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
    /// `source => destination`.
    name: String,
    source: String,
    precedence: u32,
    /// The L4 action; `None` for an intention with HTTP permissions.
    action: Option<IntentionAction>,
    permissions: Vec<Permission>,
}

#[derive(Debug, Clone)]
struct Permission {
    action: IntentionAction,
    http: Option<Http>,
    /// As written, for data planes that evaluate it themselves (Envoy).
    written: Option<HttpMatch>,
}

/// How one source is treated, told to a data plane that evaluates
/// intentions itself (Envoy's RBAC) instead of calling [`Policy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceRule<'a> {
    /// Every connection and request is allowed.
    Allow,
    /// Every connection and request is denied.
    Deny,
    /// (L7 only) the first permission whose match (`None`: any request)
    /// fits decides (`true`: allow); when none fits, the default does.
    PerRequest(Vec<(bool, Option<&'a HttpMatch>)>),
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

/// A regex, compiled at its first use: L4 decisions (the API's checks, tcp
/// listeners) never pay for it. One that does not compile matches nothing
/// and fails closed.
#[derive(Debug, Clone)]
struct Matcher {
    source: String,
    compiled: std::sync::OnceLock<Option<Regex>>,
}

impl Matcher {
    fn new(re: &str) -> Self {
        Matcher {
            source: re.to_string(),
            compiled: std::sync::OnceLock::new(),
        }
    }

    /// Whether `text` matches whole; `None` if the regex is invalid.
    fn is_match(&self, text: &str) -> Option<bool> {
        let re = self.compiled.get_or_init(|| {
            Regex::new(&format!("^(?:{})$", self.source))
                .inspect_err(|e| {
                    tracing::warn!(regex = %self.source, error = %e, "invalid regex in intention; it matches nothing and its permission denies");
                })
                .ok()
        });
        re.as_ref().map(|r| r.is_match(text))
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
    /// Compiles a destination's intentions; the highest precedence first.
    pub fn compile(set: &IntentionSet) -> Self {
        let mut sorted: Vec<&Intention> = set.rules.iter().collect();
        sorted.sort_by(|a, b| {
            b.precedence()
                .cmp(&a.precedence())
                .then_with(|| a.destination.cmp(&b.destination))
                .then_with(|| a.source.cmp(&b.source))
        });
        let rules = sorted
            .into_iter()
            .map(|i| Rule {
                name: format!("{} => {}", i.source, i.destination),
                source: i.source.clone(),
                precedence: i.precedence(),
                action: if i.permissions.is_empty() {
                    Some(i.action.unwrap_or(IntentionAction::Allow))
                } else {
                    None
                },
                permissions: i
                    .permissions
                    .iter()
                    .map(|p| Permission {
                        action: p.action,
                        http: p.http.as_ref().map(Http::compile),
                        written: p.http.clone(),
                    })
                    .collect(),
            })
            .collect();
        Self {
            default_allow: set.default_allow,
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
            matched: None,
            reason: if self.default_allow {
                "default allow".into()
            } else {
                "default deny".into()
            },
        }
    }

    fn by(rule: &Rule, allow: bool, reason: String) -> Verdict {
        Verdict {
            allow,
            matched: Some(rule.name.clone()),
            reason,
        }
    }

    /// Decides whether `source` may open a connection on a listener of `layer`.
    pub fn connection(&self, source: &str, layer: Layer) -> Verdict {
        let Some(rule) = self.rule_for(source) else {
            return self.default_verdict();
        };
        match (rule.action, layer) {
            (Some(action), _) => Self::by(
                rule,
                action == IntentionAction::Allow,
                format!(
                    "intention {} ({}, precedence {})",
                    rule.name,
                    action.as_str(),
                    rule.precedence
                ),
            ),
            // Requests are checked one by one.
            (None, Layer::L7) => Self::by(
                rule,
                true,
                format!("intention {} (L7, checked per request)", rule.name),
            ),
            (None, Layer::L4) => Self::by(
                rule,
                false,
                format!(
                    "intention {} has HTTP permissions, which deny L4 connections",
                    rule.name
                ),
            ),
        }
    }

    /// Whether a request no permission matched, or a source no intention
    /// names, is allowed.
    pub fn default_allow(&self) -> bool {
        self.default_allow
    }

    /// The sources rules name (not `*`), each once.
    pub fn named_sources(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .rules
            .iter()
            .map(|r| r.source.as_str())
            .filter(|s| *s != "*")
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// How `source` is treated on a listener of `layer`; `"*"` stands for
    /// every source no rule names. Agrees with [`Policy::connection`] and
    /// [`Policy::request`] (see the agreement tests).
    pub fn source_rule(&self, source: &str, layer: Layer) -> SourceRule<'_> {
        let Some(rule) = self.rule_for(source) else {
            return if self.default_allow {
                SourceRule::Allow
            } else {
                SourceRule::Deny
            };
        };
        match (rule.action, layer) {
            (Some(IntentionAction::Allow), _) => SourceRule::Allow,
            (Some(IntentionAction::Deny), _) | (None, Layer::L4) => SourceRule::Deny,
            (None, Layer::L7) => SourceRule::PerRequest(
                rule.permissions
                    .iter()
                    .map(|p| (p.action == IntentionAction::Allow, p.written.as_ref()))
                    .collect(),
            ),
        }
    }

    /// Decides whether `source` may make this HTTP request.
    pub fn request(&self, source: &str, req: &impl RequestView) -> Verdict {
        let Some(rule) = self.rule_for(source) else {
            return self.default_verdict();
        };
        if let Some(action) = rule.action {
            return Self::by(
                rule,
                action == IntentionAction::Allow,
                format!("intention {} ({})", rule.name, action.as_str()),
            );
        }
        for (i, p) in rule.permissions.iter().enumerate() {
            match p.http.as_ref().map_or(Some(true), |h| h.matches(req)) {
                Some(true) => {
                    return Self::by(
                        rule,
                        p.action == IntentionAction::Allow,
                        format!("intention {} permission {i}", rule.name),
                    )
                }
                Some(false) => {}
                None => {
                    return Self::by(
                        rule,
                        false,
                        format!("intention {} permission {i} (invalid regex)", rule.name),
                    )
                }
            }
        }
        let mut v = self.default_verdict();
        v.reason = format!(
            "{} (no permission of intention {} matched)",
            v.reason, rule.name
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
            headers: m.headers.iter().map(Header::compile).collect(),
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
        if let Some(re) = &self.path_regex {
            if !re.is_match(path)? {
                return Some(false);
            }
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
                        Some(re) => re.is_match(v)?,
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
mod tests;
