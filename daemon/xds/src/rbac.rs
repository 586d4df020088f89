//! Intentions as Envoy RBAC: the sources the compiled policy names and
//! the requests each may make, written as network (L4) and HTTP (L7) rules.

use envoy_types::pb::envoy::config::rbac::v3 as rbac;
use envoy_types::pb::envoy::config::route::v3::{header_matcher, HeaderMatcher};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    path_matcher, string_matcher, PathMatcher, RegexMatcher, StringMatcher,
};
use mesh_policy::{Layer, Policy, SourceRule};
use mesh_proxy::ProxySnapshot;
use mesh_types::{HeaderMatch, HttpMatch};

pub(crate) fn exact(s: &str) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(string_matcher::MatchPattern::Exact(s.to_string())),
        ..Default::default()
    }
}

pub(crate) fn regex(re: String) -> RegexMatcher {
    RegexMatcher {
        regex: re,
        ..Default::default()
    }
}

/// The peer whose certificate names `source` (any datacenter of our trust domain).
pub(crate) fn principal(snapshot: &ProxySnapshot, source: &str) -> rbac::Principal {
    let re = format!(
        "^spiffe://{}/ns/default/dc/[^/]+/svc/{}$",
        regex_escape(&snapshot.trust_domain),
        regex_escape(source)
    );
    rbac::Principal {
        identifier: Some(rbac::principal::Identifier::Authenticated(
            rbac::principal::Authenticated {
                principal_name: Some(StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::SafeRegex(regex(re))),
                    ..Default::default()
                }),
            },
        )),
    }
}

fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn principal_or(ids: Vec<rbac::Principal>) -> rbac::Principal {
    rbac::Principal {
        identifier: Some(rbac::principal::Identifier::OrIds(rbac::principal::Set {
            ids,
        })),
    }
}

fn principal_not(p: rbac::Principal) -> rbac::Principal {
    rbac::Principal {
        identifier: Some(rbac::principal::Identifier::NotId(Box::new(p))),
    }
}

fn any_permission() -> rbac::Permission {
    rbac::Permission {
        rule: Some(rbac::permission::Rule::Any(true)),
    }
}

fn any_principal() -> rbac::Principal {
    rbac::Principal {
        identifier: Some(rbac::principal::Identifier::Any(true)),
    }
}

/// Every peer that is not one of the named sources: the `*` rule's peers.
fn others(snapshot: &ProxySnapshot, named: &[&str]) -> rbac::Principal {
    if named.is_empty() {
        return any_principal();
    }
    principal_not(principal_or(
        named.iter().map(|s| principal(snapshot, s)).collect(),
    ))
}

/// L4: one decision per source. The sources that differ from what every
/// other source gets are listed: denied ones when the rest may connect,
/// allowed ones when the rest may not.
pub(crate) fn l4_rbac(policy: &Policy, snapshot: &ProxySnapshot) -> rbac::Rbac {
    let allowed = |s: &str| policy.source_rule(s, Layer::L4) == SourceRule::Allow;
    let rest_allowed = allowed("*");
    let exceptions: Vec<rbac::Principal> = policy
        .named_sources()
        .into_iter()
        .filter(|s| allowed(s) != rest_allowed)
        .map(|s| principal(snapshot, s))
        .collect();
    let action = if rest_allowed {
        rbac::rbac::Action::Deny
    } else {
        rbac::rbac::Action::Allow
    };
    let mut policies = std::collections::HashMap::new();
    if !exceptions.is_empty() {
        policies.insert(
            "consul-intentions-layer4".to_string(),
            rbac::Policy {
                principals: exceptions,
                permissions: vec![any_permission()],
                ..Default::default()
            },
        );
    }
    rbac::Rbac {
        action: action as i32,
        policies,
        ..Default::default()
    }
}

/// L7: an allow list of (source, the requests it may make): the request is
/// allowed when its peer is a source whose first matching permission
/// allows it (or, when none matches, the default does). One policy, so the
/// rendered bytes do not depend on a map's order.
pub(crate) fn l7_rbac(policy: &Policy, snapshot: &ProxySnapshot) -> rbac::Rbac {
    let named = policy.named_sources();
    let sources = named
        .iter()
        .map(|s| (principal(snapshot, s), policy.source_rule(s, Layer::L7)))
        .chain(std::iter::once((
            others(snapshot, &named),
            policy.source_rule("*", Layer::L7),
        )));
    let mut allowed = Vec::new();
    for (who, rule) in sources {
        let requests = match rule {
            SourceRule::Allow => None,
            SourceRule::Deny => continue,
            SourceRule::PerRequest(permissions) => {
                match allowed_requests(&permissions, policy.default_allow()) {
                    Some(p) => Some(as_principal(p)),
                    None => continue,
                }
            }
        };
        allowed.push(match requests {
            None => who,
            Some(requests) => rbac::Principal {
                identifier: Some(rbac::principal::Identifier::AndIds(rbac::principal::Set {
                    ids: vec![who, requests],
                })),
            },
        });
    }
    let mut policies = std::collections::HashMap::new();
    if !allowed.is_empty() {
        policies.insert(
            "consul-intentions-layer7".to_string(),
            rbac::Policy {
                principals: allowed,
                permissions: vec![any_permission()],
                ..Default::default()
            },
        );
    }
    rbac::Rbac {
        action: rbac::rbac::Action::Allow as i32,
        policies,
        ..Default::default()
    }
}

/// A request condition written as a principal (RBAC principals may look at
/// the request's headers and path too), so one principal can say "this
/// source, making one of these requests".
fn as_principal(p: rbac::Permission) -> rbac::Principal {
    use rbac::permission::Rule;
    use rbac::principal::{Identifier as Id, Set};
    let ids = |rules: Vec<rbac::Permission>| Set {
        ids: rules.into_iter().map(as_principal).collect(),
    };
    let identifier = match p.rule {
        Some(Rule::Any(any)) => Id::Any(any),
        Some(Rule::AndRules(set)) => Id::AndIds(ids(set.rules)),
        Some(Rule::OrRules(set)) => Id::OrIds(ids(set.rules)),
        Some(Rule::NotRule(inner)) => Id::NotId(Box::new(as_principal(*inner))),
        Some(Rule::Header(h)) => Id::Header(h),
        Some(Rule::UrlPath(path)) => Id::UrlPath(path),
        // Nothing else is rendered; were it, it would match no request.
        _ => Id::NotId(Box::new(any_principal())),
    };
    rbac::Principal {
        identifier: Some(identifier),
    }
}

/// The requests a permission list allows: permission i decides when it
/// matches and none before it did. `None`: no request is allowed.
fn allowed_requests(
    permissions: &[(bool, Option<&HttpMatch>)],
    default_allow: bool,
) -> Option<rbac::Permission> {
    let mut allowed = Vec::new();
    let mut earlier: Vec<rbac::Permission> = Vec::new();
    for (allow, matcher) in permissions {
        let this = matcher.map_or_else(any_permission, http_permission);
        if *allow {
            let mut all = earlier
                .iter()
                .cloned()
                .map(permission_not)
                .collect::<Vec<_>>();
            all.push(this.clone());
            allowed.push(permission_and(all));
        }
        earlier.push(this);
    }
    if default_allow {
        let none = earlier.into_iter().map(permission_not).collect::<Vec<_>>();
        allowed.push(if none.is_empty() {
            any_permission()
        } else {
            permission_and(none)
        });
    }
    (!allowed.is_empty()).then(|| permission_or(allowed))
}

fn permission_and(rules: Vec<rbac::Permission>) -> rbac::Permission {
    rbac::Permission {
        rule: Some(rbac::permission::Rule::AndRules(rbac::permission::Set {
            rules,
        })),
    }
}

fn permission_or(rules: Vec<rbac::Permission>) -> rbac::Permission {
    rbac::Permission {
        rule: Some(rbac::permission::Rule::OrRules(rbac::permission::Set {
            rules,
        })),
    }
}

fn permission_not(p: rbac::Permission) -> rbac::Permission {
    rbac::Permission {
        rule: Some(rbac::permission::Rule::NotRule(Box::new(p))),
    }
}

fn header_permission(matcher: HeaderMatcher) -> rbac::Permission {
    rbac::Permission {
        rule: Some(rbac::permission::Rule::Header(matcher)),
    }
}

fn path_permission(pattern: string_matcher::MatchPattern) -> rbac::Permission {
    rbac::Permission {
        rule: Some(rbac::permission::Rule::UrlPath(PathMatcher {
            rule: Some(path_matcher::Rule::Path(StringMatcher {
                match_pattern: Some(pattern),
                ..Default::default()
            })),
        })),
    }
}

/// Every set condition of an HTTP match, as one permission.
fn http_permission(m: &HttpMatch) -> rbac::Permission {
    let mut all = Vec::new();
    if let Some(p) = &m.path_exact {
        all.push(path_permission(string_matcher::MatchPattern::Exact(
            p.clone(),
        )));
    }
    if let Some(p) = &m.path_prefix {
        all.push(path_permission(string_matcher::MatchPattern::Prefix(
            p.clone(),
        )));
    }
    if let Some(p) = &m.path_regex {
        all.push(path_permission(string_matcher::MatchPattern::SafeRegex(
            regex(p.clone()),
        )));
    }
    if !m.methods.is_empty() {
        all.push(permission_or(
            m.methods
                .iter()
                .map(|method| {
                    header_permission(HeaderMatcher {
                        name: ":method".into(),
                        header_match_specifier: Some(
                            header_matcher::HeaderMatchSpecifier::StringMatch(exact(
                                &method.to_ascii_uppercase(),
                            )),
                        ),
                        ..Default::default()
                    })
                })
                .collect(),
        ));
    }
    for h in &m.headers {
        all.push(header(h));
    }
    match all.len() {
        0 => any_permission(),
        1 => all.remove(0),
        _ => permission_and(all),
    }
}

/// A header condition: every value matcher it sets must hold (as mesh's
/// own proxy checks it), or, with none, the header is present; `Invert`
/// negates the whole.
pub(crate) fn header(h: &HeaderMatch) -> rbac::Permission {
    let patterns: Vec<string_matcher::MatchPattern> = [
        h.exact.clone().map(string_matcher::MatchPattern::Exact),
        h.prefix.clone().map(string_matcher::MatchPattern::Prefix),
        h.suffix.clone().map(string_matcher::MatchPattern::Suffix),
        h.regex
            .clone()
            .map(|v| string_matcher::MatchPattern::SafeRegex(regex(v))),
    ]
    .into_iter()
    .flatten()
    .collect();
    let on = |spec| {
        header_permission(HeaderMatcher {
            name: h.name.to_ascii_lowercase(),
            header_match_specifier: Some(spec),
            ..Default::default()
        })
    };
    let mut all: Vec<rbac::Permission> = if patterns.is_empty() {
        vec![on(header_matcher::HeaderMatchSpecifier::PresentMatch(true))]
    } else {
        patterns
            .into_iter()
            .map(|p| {
                on(header_matcher::HeaderMatchSpecifier::StringMatch(
                    StringMatcher {
                        match_pattern: Some(p),
                        ..Default::default()
                    },
                ))
            })
            .collect()
    };
    let condition = if all.len() == 1 {
        all.remove(0)
    } else {
        permission_and(all)
    };
    if h.invert {
        permission_not(condition)
    } else {
        condition
    }
}
