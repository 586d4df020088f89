//! Prepared queries: stored, resolved by ID, name or template prefix, and
//! run against the catalog's health view. Running one is a read: the same
//! code answers `/v1/query/:id/execute` and DNS `<name>.query.<domain>`.

use std::collections::BTreeMap;

use mesh_types::{CheckStatus, Outcome, PreparedQuery, MAX_QUERIES, TEMPLATE_NAME_PREFIX_MATCH};
use serde::{Deserialize, Serialize};

use crate::apply::{rejected, Applied};
use crate::{ServiceHealth, State, Table};

/// The prepared query table, appended to [`State`] in snapshot format 6.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct QueryTables {
    pub queries: BTreeMap<String, PreparedQuery>,
    pub index: u64,
}

// === reads ===

impl State {
    pub fn prepared_query(&self, id: &str) -> Option<&PreparedQuery> {
        self.queries.queries.get(id)
    }

    pub fn prepared_queries(&self) -> impl Iterator<Item = &PreparedQuery> {
        self.queries.queries.values()
    }

    /// The query `id_or_name` runs: by ID, else by exact name, else the
    /// template whose name is the longest prefix of it, rendered for it.
    pub fn resolve_query(&self, id_or_name: &str) -> Option<PreparedQuery> {
        if let Some(q) = self.queries.queries.get(id_or_name) {
            return Some(render_template(q, id_or_name));
        }
        let all = || self.queries.queries.values();
        if let Some(q) = all().find(|q| !q.is_template() && q.name == id_or_name) {
            return Some(q.clone());
        }
        all()
            .filter(|q| q.is_template() && id_or_name.starts_with(&q.name))
            .max_by_key(|q| q.name.len())
            .map(|q| render_template(q, id_or_name))
    }

    /// The instances `query` answers with, before ACL filtering: healthy
    /// per its `OnlyPassing`, with its tags and meta, nearest to `near` first.
    pub fn run_query<'a>(&'a self, query: &PreparedQuery, near: &str) -> Vec<ServiceHealth<'a>> {
        let instances: Vec<ServiceHealth<'a>> = if query.connect {
            self.connect_proxies_of(&query.service)
        } else {
            self.service_health(&query.service)
        };
        let mut out: Vec<ServiceHealth<'a>> = instances
            .into_iter()
            .filter(|h| healthy_enough(h, query))
            .filter(|h| has_query_tags(&h.service.tags, &query.tags))
            .filter(|h| meta_matches(&h.node.meta, &query.node_meta))
            .filter(|h| meta_matches(&h.service.meta, &query.service_meta))
            .collect();
        let near = if near.is_empty() {
            query.near.as_str()
        } else {
            near
        };
        if self.coordinate(near).is_some() {
            // Nearest first by estimated round trip (the near node: zero).
            self.sort_by_rtt(near, &mut out, |h| &h.node.name);
        } else if !near.is_empty() {
            // No coordinate yet: the named node's instances first, stable.
            out.sort_by_key(|h| h.node.name != near);
        }
        out
    }

    /// Connect proxies (and connect-native instances) fronting `service`.
    fn connect_proxies_of<'a>(&'a self, service: &str) -> Vec<ServiceHealth<'a>> {
        self.services
            .iter()
            .filter(|(_, s)| {
                (s.kind == "connect-proxy"
                    && s.proxy
                        .as_ref()
                        .is_some_and(|p| p.destination_service_name == service))
                    || (s.name == service && s.connect_native)
            })
            .filter_map(|((node, _), s)| {
                Some(ServiceHealth {
                    node: self.nodes.get(node)?,
                    service: s,
                    checks: self.checks_for(node, &s.id),
                })
            })
            .collect()
    }
}

/// Passing only with `OnlyPassing`; otherwise anything but critical.
/// Checks the query ignores do not count.
fn healthy_enough(h: &ServiceHealth<'_>, q: &PreparedQuery) -> bool {
    let worst = h
        .checks
        .iter()
        .filter(|c| !q.ignore_check_ids.contains(&c.check_id))
        .map(|c| c.status)
        .max()
        .unwrap_or(CheckStatus::Passing);
    if q.only_passing {
        worst == CheckStatus::Passing
    } else {
        worst != CheckStatus::Critical
    }
}

/// Consul's rule: each tag must be on the instance, each `!tag` must not;
/// compared without case.
fn has_query_tags(tags: &[String], wanted: &[String]) -> bool {
    let has = |t: &str| tags.iter().any(|x| x.eq_ignore_ascii_case(t));
    wanted.iter().all(|w| match w.strip_prefix('!') {
        Some(absent) => !has(absent),
        None => has(w),
    })
}

fn meta_matches(meta: &BTreeMap<String, String>, wanted: &BTreeMap<String, String>) -> bool {
    wanted.iter().all(|(k, v)| meta.get(k) == Some(v))
}

/// Patterns compiled at most once while in the cache (templates resolve on
/// every `.query.` DNS lookup; event filters on every list).
const REGEX_CACHE_ENTRIES: usize = 256;

/// `pattern` compiled, from a process-wide cache; `None` if it does not
/// compile. Bounded: the cache is emptied when full.
pub fn cached_regex(pattern: &str) -> Option<regex::Regex> {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};
    static CACHE: LazyLock<Mutex<HashMap<String, Option<regex::Regex>>>> =
        LazyLock::new(Default::default);
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(hit) = cache.get(pattern) {
        return hit.clone();
    }
    let compiled = regex::Regex::new(pattern).ok();
    if cache.len() >= REGEX_CACHE_ENTRIES {
        cache.clear();
    }
    cache.insert(pattern.to_string(), compiled.clone());
    compiled
}

/// A template's fields with `${name.full}`, `${name.prefix}`,
/// `${name.suffix}` and `${match(N)}` filled in for the name it runs as;
/// any other query is returned as is.
fn render_template(q: &PreparedQuery, name: &str) -> PreparedQuery {
    if !q.is_template() {
        return q.clone();
    }
    let suffix = name.strip_prefix(q.name.as_str()).unwrap_or_default();
    let groups: Vec<String> = match cached_regex(&q.template_regexp) {
        Some(re) if !q.template_regexp.is_empty() => re
            .captures(name)
            .map(|c| {
                c.iter()
                    .map(|m| m.map_or(String::new(), |m| m.as_str().to_string()))
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let fill = |text: &str| {
        let mut out = text
            .replace("${name.full}", name)
            .replace("${name.prefix}", &q.name)
            .replace("${name.suffix}", suffix);
        for (i, g) in groups.iter().enumerate() {
            out = out.replace(&format!("${{match({i})}}"), g);
        }
        // A group the expression did not have is empty, as in Consul.
        while let Some(start) = out.find("${match(") {
            let end = out[start..].find(")}").map_or(out.len(), |e| start + e + 2);
            out.replace_range(start..end, "");
        }
        out
    };
    let mut r = q.clone();
    r.service = fill(&q.service);
    r.tags = q.tags.iter().map(|t| fill(t)).collect();
    if q.remove_empty_tags {
        r.tags.retain(|t| !t.is_empty() && t != "!");
    }
    r.node_meta = q
        .node_meta
        .iter()
        .map(|(k, v)| (k.clone(), fill(v)))
        .collect();
    r.service_meta = q
        .service_meta
        .iter()
        .map(|(k, v)| (k.clone(), fill(v)))
        .collect();
    r.near = fill(&q.near);
    r
}

// === writes ===

impl State {
    pub(crate) fn query_set(&mut self, index: u64, mut query: PreparedQuery) -> Applied {
        if query.id.is_empty() {
            return rejected("a prepared query needs an ID");
        }
        if !query.name.is_empty() {
            if let Some(other) = self
                .queries
                .queries
                .values()
                .find(|o| o.name == query.name && o.id != query.id)
            {
                return rejected(format!(
                    "a prepared query named {:?} already exists ({})",
                    query.name, other.id
                ));
            }
        }
        if !query.template_type.is_empty() && query.template_type != TEMPLATE_NAME_PREFIX_MATCH {
            return rejected(format!(
                "template type {:?} is not supported (only {TEMPLATE_NAME_PREFIX_MATCH})",
                query.template_type
            ));
        }
        if !query.session.is_empty() && !self.sessions.sessions.contains_key(&query.session) {
            return rejected(format!("session {:?} does not exist", query.session));
        }
        match self.queries.queries.get(&query.id) {
            Some(old) => query.create_index = old.create_index,
            None if self.queries.queries.len() >= MAX_QUERIES => {
                return rejected(format!(
                    "the cluster holds {MAX_QUERIES} prepared queries (MAX_QUERIES)"
                ))
            }
            None => query.create_index = index,
        }
        query.modify_index = index;
        self.queries.queries.insert(query.id.clone(), query);
        self.queries.index = index;
        (Outcome::Done, vec![Table::Queries])
    }

    pub(crate) fn query_delete(&mut self, index: u64, id: &str) -> Applied {
        if self.queries.queries.remove(id).is_none() {
            return (Outcome::Done, Vec::new());
        }
        self.queries.index = index;
        (Outcome::Done, vec![Table::Queries])
    }

    /// Queries bound to an invalidated session go with it (Consul's rule).
    pub(crate) fn drop_queries_of_session(&mut self, index: u64, session: &str) -> bool {
        let before = self.queries.queries.len();
        self.queries.queries.retain(|_, q| q.session != session);
        let dropped = self.queries.queries.len() != before;
        if dropped {
            self.queries.index = index;
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> PreparedQuery {
        PreparedQuery {
            id: "t".into(),
            name: "geo-".into(),
            service: "${match(1)}".into(),
            tags: vec!["${match(2)}".into(), "v1".into()],
            template_type: TEMPLATE_NAME_PREFIX_MATCH.into(),
            template_regexp: "^geo-([a-z]+)-?([a-z]*)$".into(),
            remove_empty_tags: true,
            ..Default::default()
        }
    }

    #[test]
    fn templates_fill_in_the_name_and_regexp_groups() {
        let r = render_template(&template(), "geo-db-primary");
        assert_eq!(r.service, "db");
        assert_eq!(r.tags, vec!["primary".to_string(), "v1".into()]);
        let r = render_template(&template(), "geo-db");
        assert_eq!(r.tags, vec!["v1".to_string()], "the empty tag is removed");
        let mut q = template();
        q.service = "${name.suffix}-${name.prefix}-${name.full}".into();
        assert_eq!(render_template(&q, "geo-web").service, "web-geo--geo-web");
    }

    #[test]
    fn tag_rules_follow_consul() {
        let tags = vec!["Primary".to_string(), "v1".into()];
        assert!(has_query_tags(&tags, &["primary".into()]));
        assert!(has_query_tags(&tags, &["!v2".into()]));
        assert!(!has_query_tags(&tags, &["!v1".into()]));
        assert!(!has_query_tags(&tags, &["v2".into()]));
    }
}
