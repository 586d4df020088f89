//! What a watch (`consul watch`, the agent's `watches`) looks at, as its
//! settings name it; shared by the config checks and the watch runner.

use std::collections::BTreeMap;

/// A watch's settings were wrong: the message names the field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WatchError(pub String);

/// What a watch looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchKind {
    Key {
        key: String,
    },
    KeyPrefix {
        prefix: String,
    },
    Services,
    Nodes,
    Service {
        service: String,
        tags: Vec<String>,
        passing_only: bool,
    },
    Checks {
        service: Option<String>,
        state: Option<String>,
    },
    Event {
        name: Option<String>,
    },
}

/// The check states a `checks` watch may filter on.
pub const STATES: [&str; 4] = ["any", "passing", "warning", "critical"];

/// The types `-type` accepts, in Consul's spelling.
pub const TYPES: [&str; 7] = [
    "key",
    "keyprefix",
    "services",
    "nodes",
    "service",
    "checks",
    "event",
];

impl WatchKind {
    /// Builds a watch of `kind` from its parameters (`key`, `prefix`,
    /// `service`, `tag`, `passingonly`, `state`, `name`), refusing missing
    /// required ones and ones that type does not take.
    pub fn parse(kind: &str, params: &BTreeMap<String, Vec<String>>) -> Result<Self, WatchError> {
        let allowed: &[&str] = match kind {
            "key" => &["key"],
            "keyprefix" => &["prefix"],
            "services" | "nodes" => &[],
            "service" => &["service", "tag", "passingonly"],
            "checks" => &["service", "state"],
            "event" => &["name"],
            "" => return Err(WatchError("a watch needs a type".into())),
            other => {
                return Err(WatchError(format!(
                    "unknown watch type {other:?} (one of {})",
                    TYPES.join(", ")
                )))
            }
        };
        if let Some(extra) = params.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(WatchError(format!(
                "a {kind} watch does not take {extra:?}{}",
                if allowed.is_empty() {
                    String::new()
                } else {
                    format!(" (it takes {})", allowed.join(", "))
                }
            )));
        }
        let one = |k: &str| {
            params
                .get(k)
                .and_then(|v| v.last())
                .cloned()
                .filter(|v| !v.is_empty())
        };
        let required =
            |k: &str| one(k).ok_or_else(|| WatchError(format!("a {kind} watch needs {k}")));
        Ok(match kind {
            "key" => WatchKind::Key {
                key: required("key")?,
            },
            "keyprefix" => WatchKind::KeyPrefix {
                prefix: one("prefix").unwrap_or_default(),
            },
            "services" => WatchKind::Services,
            "nodes" => WatchKind::Nodes,
            "service" => WatchKind::Service {
                service: required("service")?,
                tags: params.get("tag").cloned().unwrap_or_default(),
                passing_only: match one("passingonly").as_deref() {
                    None | Some("false") => false,
                    Some("true") => true,
                    Some(other) => {
                        return Err(WatchError(format!(
                            "passingonly must be true or false, not {other:?}"
                        )))
                    }
                },
            },
            "checks" => {
                let (service, state) = (one("service"), one("state"));
                if service.is_some() && state.is_some() {
                    return Err(WatchError(
                        "a checks watch takes service or state, not both".into(),
                    ));
                }
                if let Some(s) = state.as_deref().filter(|s| !STATES.contains(s)) {
                    return Err(WatchError(format!(
                        "state {s:?} is not one of {}",
                        STATES.join(", ")
                    )));
                }
                WatchKind::Checks { service, state }
            }
            _ => WatchKind::Event { name: one("name") },
        })
    }
}
