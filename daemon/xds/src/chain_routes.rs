//! A discovery chain as Envoy routes: the router's routes (matches,
//! rewrites, header changes, timeouts, retries) and the splitter's shares
//! as weighted clusters, with one cluster per resolver target, named as
//! Consul names them (`[subset.]service.default.<dc>.internal.<td>`). The
//! built-in proxy follows the same compiled chain.

use std::collections::BTreeMap;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{
    header_value_option, HeaderValue, HeaderValueOption,
};
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher, query_parameter_matcher, route, route_action, route_match, weighted_cluster,
    HeaderMatcher, QueryParameterMatcher, RetryPolicy, Route, RouteAction, RouteConfiguration,
    RouteMatch, VirtualHost, WeightedCluster,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};
use envoy_types::pb::google::protobuf::UInt32Value;
use mesh_chain::entries::{HeaderMods, HttpMatch, LoadBalancer, RouteDestination};
use mesh_chain::{CompiledChain, Target};
use mesh_proxy::ProxySnapshot;

use crate::rbac::regex;
use crate::render::duration;

/// Envoy's `lb_policy` for a resolver's load-balancer policy.
pub(crate) fn lb_policy(lb: Option<&LoadBalancer>) -> i32 {
    use envoy_types::pb::envoy::config::cluster::v3::cluster::LbPolicy;
    (match lb.map(|l| l.policy.as_str()) {
        Some("random") => LbPolicy::Random,
        Some("least_request") => LbPolicy::LeastRequest,
        Some("ring_hash") => LbPolicy::RingHash,
        Some("maglev") => LbPolicy::Maglev,
        _ => LbPolicy::RoundRobin,
    }) as i32
}

/// A resolver's hash policies as a route's.
fn hash_policies(lb: Option<&LoadBalancer>) -> Vec<route_action::HashPolicy> {
    use route_action::hash_policy::{
        ConnectionProperties, Cookie, Header, PolicySpecifier, QueryParameter,
    };
    lb.into_iter()
        .flat_map(|l| &l.hashpolicies)
        .filter_map(|h| {
            let specifier = match h.field.as_str() {
                "header" => PolicySpecifier::Header(Header {
                    header_name: h.fieldvalue.to_ascii_lowercase(),
                    ..Default::default()
                }),
                "cookie" => PolicySpecifier::Cookie(Cookie {
                    name: h.fieldvalue.clone(),
                    ..Default::default()
                }),
                "query_parameter" => PolicySpecifier::QueryParameter(QueryParameter {
                    name: h.fieldvalue.clone(),
                }),
                _ if h.sourceip => {
                    PolicySpecifier::ConnectionProperties(ConnectionProperties { source_ip: true })
                }
                _ => return None,
            };
            Some(route_action::HashPolicy {
                policy_specifier: Some(specifier),
                terminal: h.terminal,
            })
        })
        .collect()
}

/// The load balancer of the one resolver `node` leads to, if one.
fn resolver_lb<'c>(chain: &'c CompiledChain, node: &str) -> Option<&'c LoadBalancer> {
    let n = chain.nodes.get(node)?;
    match (&n.resolver, &n.splits) {
        (Some(_), _) => n.load_balancer.as_ref(),
        (None, Some(splits)) if splits.len() == 1 => resolver_lb(chain, &splits[0].next_node),
        _ => None,
    }
}

/// The load balancer of the resolver whose target is `target`.
pub(crate) fn target_lb<'c>(chain: &'c CompiledChain, target: &str) -> Option<&'c LoadBalancer> {
    chain
        .nodes
        .values()
        .find(|n| n.resolver.as_ref().is_some_and(|r| r.target == target))
        .and_then(|n| n.load_balancer.as_ref())
}

/// Envoy's name (and SNI) for a target's cluster.
pub(crate) fn target_cluster_name(snapshot: &ProxySnapshot, target: &Target) -> String {
    let subset = if target.service_subset.is_empty() {
        String::new()
    } else {
        format!("{}.", target.service_subset)
    };
    format!(
        "{subset}{}.default.{}.internal.{}",
        target.service, snapshot.datacenter, snapshot.trust_domain
    )
}

fn pattern(p: string_matcher::MatchPattern) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(p),
        ..Default::default()
    }
}

fn route_match(m: Option<&HttpMatch>) -> RouteMatch {
    let Some(m) = m else {
        return RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
            ..Default::default()
        };
    };
    let path = if !m.pathexact.is_empty() {
        route_match::PathSpecifier::Path(m.pathexact.clone())
    } else if !m.pathregex.is_empty() {
        route_match::PathSpecifier::SafeRegex(regex(m.pathregex.clone()))
    } else if !m.pathprefix.is_empty() {
        route_match::PathSpecifier::Prefix(m.pathprefix.clone())
    } else {
        route_match::PathSpecifier::Prefix("/".into())
    };
    let mut headers: Vec<HeaderMatcher> = m
        .header
        .iter()
        .map(|h| {
            let spec = if !h.exact.is_empty() {
                header_matcher::HeaderMatchSpecifier::StringMatch(pattern(
                    string_matcher::MatchPattern::Exact(h.exact.clone()),
                ))
            } else if !h.prefix.is_empty() {
                header_matcher::HeaderMatchSpecifier::StringMatch(pattern(
                    string_matcher::MatchPattern::Prefix(h.prefix.clone()),
                ))
            } else if !h.suffix.is_empty() {
                header_matcher::HeaderMatchSpecifier::StringMatch(pattern(
                    string_matcher::MatchPattern::Suffix(h.suffix.clone()),
                ))
            } else if !h.regex.is_empty() {
                header_matcher::HeaderMatchSpecifier::StringMatch(pattern(
                    string_matcher::MatchPattern::SafeRegex(regex(h.regex.clone())),
                ))
            } else {
                header_matcher::HeaderMatchSpecifier::PresentMatch(true)
            };
            HeaderMatcher {
                name: h.name.to_ascii_lowercase(),
                header_match_specifier: Some(spec),
                invert_match: h.invert,
                ..Default::default()
            }
        })
        .collect();
    if !m.methods.is_empty() {
        headers.push(HeaderMatcher {
            name: ":method".into(),
            header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(
                pattern(string_matcher::MatchPattern::SafeRegex(regex(
                    m.methods.join("|"),
                ))),
            )),
            ..Default::default()
        });
    }
    let query_parameters = m
        .queryparam
        .iter()
        .map(|q| {
            let spec = if !q.exact.is_empty() {
                query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(pattern(
                    string_matcher::MatchPattern::Exact(q.exact.clone()),
                ))
            } else if !q.regex.is_empty() {
                query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(pattern(
                    string_matcher::MatchPattern::SafeRegex(regex(q.regex.clone())),
                ))
            } else {
                query_parameter_matcher::QueryParameterMatchSpecifier::PresentMatch(true)
            };
            QueryParameterMatcher {
                name: q.name.clone(),
                query_parameter_match_specifier: Some(spec),
            }
        })
        .collect();
    RouteMatch {
        path_specifier: Some(path),
        headers,
        query_parameters,
        ..Default::default()
    }
}

fn headers_to_add(mods: &HeaderMods) -> Vec<HeaderValueOption> {
    let option = |(k, v): (&String, &String), action: header_value_option::HeaderAppendAction| {
        HeaderValueOption {
            header: Some(HeaderValue {
                key: k.to_ascii_lowercase(),
                value: v.clone(),
                ..Default::default()
            }),
            append_action: action as i32,
            ..Default::default()
        }
    };
    mods.add
        .iter()
        .map(|kv| {
            option(
                kv,
                header_value_option::HeaderAppendAction::AppendIfExistsOrAdd,
            )
        })
        .chain(mods.set.iter().map(|kv| {
            option(
                kv,
                header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd,
            )
        }))
        .collect()
}

fn retry_policy(d: &RouteDestination) -> Option<RetryPolicy> {
    if d.numretries == 0 && !d.retryonconnectfailure && d.retryonstatuscodes.is_empty() {
        return None;
    }
    let mut on = Vec::new();
    if d.retryonconnectfailure {
        on.push("connect-failure");
    }
    if !d.retryonstatuscodes.is_empty() {
        on.push("retriable-status-codes");
    }
    if on.is_empty() {
        // As the built-in proxy: retries with no condition cover failures and 5xx.
        on.extend(["5xx", "connect-failure"]);
    }
    Some(RetryPolicy {
        retry_on: on.join(","),
        num_retries: Some(UInt32Value {
            value: d.numretries.max(1),
        }),
        retriable_status_codes: d.retryonstatuscodes.iter().map(|c| u32::from(*c)).collect(),
        ..Default::default()
    })
}

/// The clusters (and weights, in hundredths of a percent) a node leads to.
fn shares(
    chain: &CompiledChain,
    snapshot: &ProxySnapshot,
    node: &str,
    weight: f64,
    out: &mut BTreeMap<String, f64>,
    depth: usize,
) {
    let Some(n) = chain.nodes.get(node) else {
        return;
    };
    if depth > chain.nodes.len() {
        return;
    }
    if let Some(splits) = &n.splits {
        for s in splits {
            shares(
                chain,
                snapshot,
                &s.next_node,
                weight * s.weight / 100.0,
                out,
                depth + 1,
            );
        }
    } else if let Some(target) = n
        .resolver
        .as_ref()
        .and_then(|r| chain.targets.get(&r.target))
    {
        *out.entry(target_cluster_name(snapshot, target))
            .or_default() += weight;
    }
}

fn action_to(
    chain: &CompiledChain,
    snapshot: &ProxySnapshot,
    node: &str,
) -> route_action::ClusterSpecifier {
    let mut out = BTreeMap::new();
    shares(chain, snapshot, node, 1.0, &mut out, 0);
    if out.len() == 1 {
        let (name, _) = out.into_iter().next().unwrap_or_default();
        return route_action::ClusterSpecifier::Cluster(name);
    }
    route_action::ClusterSpecifier::WeightedClusters(WeightedCluster {
        clusters: out
            .into_iter()
            .map(|(name, w)| weighted_cluster::ClusterWeight {
                name,
                weight: Some(UInt32Value {
                    value: (w * 10_000.0).round() as u32,
                }),
                ..Default::default()
            })
            .filter(|c| c.weight.as_ref().is_some_and(|w| w.value > 0))
            .collect(),
        ..Default::default()
    })
}

/// Route configuration `name` for an upstream whose chain starts with a
/// router or a splitter.
pub(crate) fn chain_route_config(
    name: &str,
    snapshot: &ProxySnapshot,
    chain: &CompiledChain,
) -> RouteConfiguration {
    let start = chain.nodes.get(&chain.start_node);
    let routes = match start.and_then(|n| n.routes.as_ref()) {
        Some(routes) => routes
            .iter()
            .map(|r| {
                let d = r.definition.destination.clone().unwrap_or_default();
                let m = r.definition.r#match.as_ref().and_then(|m| m.http.as_ref());
                let timeout = if d.requesttimeout.0.is_zero() {
                    Duration::ZERO
                } else {
                    d.requesttimeout.0
                };
                Route {
                    r#match: Some(route_match(m)),
                    action: Some(route::Action::Route(RouteAction {
                        cluster_specifier: Some(action_to(chain, snapshot, &r.next_node)),
                        prefix_rewrite: d.prefixrewrite.clone(),
                        timeout: Some(duration(timeout)),
                        retry_policy: retry_policy(&d),
                        hash_policy: hash_policies(resolver_lb(chain, &r.next_node)),
                        ..Default::default()
                    })),
                    request_headers_to_add: headers_to_add(&d.requestheaders),
                    request_headers_to_remove: d.requestheaders.remove.clone(),
                    response_headers_to_add: headers_to_add(&d.responseheaders),
                    response_headers_to_remove: d.responseheaders.remove.clone(),
                    ..Default::default()
                }
            })
            .collect(),
        None => vec![Route {
            r#match: Some(route_match(None)),
            action: Some(route::Action::Route(RouteAction {
                cluster_specifier: Some(action_to(chain, snapshot, &chain.start_node)),
                timeout: Some(duration(Duration::ZERO)),
                hash_policy: hash_policies(resolver_lb(chain, &chain.start_node)),
                ..Default::default()
            })),
            ..Default::default()
        }],
    };
    RouteConfiguration {
        name: name.into(),
        virtual_hosts: vec![VirtualHost {
            name: name.into(),
            domains: vec!["*".into()],
            routes,
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(kind: &str, name: &str) -> Option<String> {
        let body = match (kind, name) {
            ("service-defaults", _) => r#"{"Protocol":"http"}"#,
            ("service-resolver", "shop") => r#"{"Subsets":{"v1":{},"v2":{}}}"#,
            ("service-splitter", "shop") => {
                r#"{"Splits":[{"Weight":90,"ServiceSubset":"v1"},{"Weight":10,"Service":"cart"}]}"#
            }
            ("service-splitter", "cart") => {
                r#"{"Splits":[{"Weight":50,"ServiceSubset":""},{"Weight":50,"Service":"shop","ServiceSubset":"v2"}]}"#
            }
            _ => return None,
        };
        Some(body.to_string())
    }

    #[test]
    fn nested_splits_flatten_to_weighted_clusters() {
        let chain = mesh_chain::compile(&entries, "shop", "dc1", "").unwrap();
        let snapshot = ProxySnapshot {
            datacenter: "dc1".into(),
            trust_domain: "td".into(),
            ..Default::default()
        };
        let config = chain_route_config("shop", &snapshot, &chain);
        let route = &config.virtual_hosts[0].routes[0];
        let Some(route::Action::Route(action)) = &route.action else {
            panic!("no route action");
        };
        let Some(route_action::ClusterSpecifier::WeightedClusters(w)) = &action.cluster_specifier
        else {
            panic!("not weighted: {action:?}");
        };
        let weights: BTreeMap<&str, u32> = w
            .clusters
            .iter()
            .map(|c| (c.name.as_str(), c.weight.as_ref().unwrap().value))
            .collect();
        assert_eq!(
            weights,
            BTreeMap::from([
                ("cart.default.dc1.internal.td", 500),
                ("v1.shop.default.dc1.internal.td", 9000),
                ("v2.shop.default.dc1.internal.td", 500),
            ])
        );
    }
}

#[cfg(test)]
mod lb_tests {
    use super::*;

    #[test]
    fn a_ring_hash_resolver_renders_its_policy_and_the_routes_hash() {
        let entries = |kind: &str, name: &str| -> Option<String> {
            let body = match (kind, name) {
                ("service-defaults", _) => r#"{"Protocol":"http"}"#,
                ("service-router", "cart") => r#"{"Routes":[]}"#,
                ("service-resolver", "cart") => {
                    r#"{"LoadBalancer":{"Policy":"ring_hash","HashPolicies":[{"Field":"cookie","FieldValue":"session"}]}}"#
                }
                _ => return None,
            };
            Some(body.to_string())
        };
        let chain = mesh_chain::compile(&entries, "cart", "dc1", "").unwrap();
        let target = chain
            .nodes
            .values()
            .find_map(|n| n.resolver.as_ref())
            .unwrap();
        use envoy_types::pb::envoy::config::cluster::v3::cluster::LbPolicy;
        assert_eq!(
            lb_policy(target_lb(&chain, &target.target)),
            LbPolicy::RingHash as i32
        );
        let snapshot = ProxySnapshot::default();
        let config = chain_route_config("cart", &snapshot, &chain);
        let Some(route::Action::Route(action)) = &config.virtual_hosts[0].routes[0].action else {
            panic!("no action");
        };
        assert_eq!(action.hash_policy.len(), 1, "{action:?}");
    }
}
