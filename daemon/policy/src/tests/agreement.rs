//! The API and the proxy decide alike: random intention sets and requests go
//! through the API's path (every intention, filtered for the destination,
//! compiled) and the proxy's (the same set after the snapshot's JSON round
//! trip, compiled in the proxy), and both must give the answer, and name the
//! intention, that Consul's precedence table gives.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

const SOURCES: [&str; 4] = ["a", "b", "c", "*"];
const DESTINATIONS: [&str; 3] = ["x", "y", "*"];

/// What an intention does: an L4 action, or HTTP permissions.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Allow,
    Deny,
    Http,
}

fn intention(source: &str, destination: &str, kind: Kind) -> Intention {
    let (action, permissions) = match kind {
        Kind::Allow => (Some(Action::Allow), vec![]),
        Kind::Deny => (Some(Action::Deny), vec![]),
        Kind::Http => (None, vec![P::default()]),
    };
    Intention {
        source: source.into(),
        destination: destination.into(),
        action,
        permissions,
        ..Default::default()
    }
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::Allow), Just(Kind::Deny), Just(Kind::Http)]
}

/// At most one intention per (source, destination), as the catalog keeps them.
fn intentions() -> impl Strategy<Value = Vec<Intention>> {
    proptest::collection::vec((0..SOURCES.len(), 0..DESTINATIONS.len(), kind()), 0..12).prop_map(
        |picks| {
            let unique: BTreeMap<(usize, usize), Kind> =
                picks.into_iter().map(|(s, d, k)| ((s, d), k)).collect();
            unique
                .into_iter()
                .map(|((s, d), k)| intention(SOURCES[s], DESTINATIONS[d], k))
                .collect()
        },
    )
}

/// Consul's table, written out independently of `Policy`: the matching
/// intention of highest precedence decides (exact → exact 9, * → exact 8,
/// exact → * 6, * → * 5); one with HTTP permissions denies an L4
/// connection and admits an L7 one; without a match, the default.
fn oracle(
    all: &[Intention],
    source: &str,
    destination: &str,
    default_allow: bool,
    layer: Layer,
) -> (bool, Option<String>) {
    let rank = |i: &Intention| match (i.source == "*", i.destination == "*") {
        (false, false) => 9,
        (true, false) => 8,
        (false, true) => 6,
        (true, true) => 5,
    };
    let best = all
        .iter()
        .filter(|i| i.source == source || i.source == "*")
        .filter(|i| i.destination == destination || i.destination == "*")
        .max_by_key(|i| rank(i));
    match best {
        None => (default_allow, None),
        Some(i) => {
            let allow = match (i.action, layer) {
                (Some(a), _) => a == Action::Allow,
                (None, Layer::L4) => false,
                (None, Layer::L7) => true,
            };
            (allow, Some(format!("{} => {}", i.source, i.destination)))
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn the_api_and_the_proxy_decide_as_consuls_table_does(
        all in intentions(),
        source in 0..3usize,
        destination in 0..2usize,
        default_allow in any::<bool>(),
    ) {
        let (source, destination) = (SOURCES[source], DESTINATIONS[destination]);
        // The API: every intention in the catalog, filtered and compiled.
        let api = Policy::compile(&IntentionSet::for_destination(&all, destination, default_allow));
        // The proxy: the agent's snapshot of that destination, as JSON on the
        // wire, parsed and compiled in the sidecar.
        let wire = serde_json::to_vec(&IntentionSet::for_destination(&all, destination, default_allow)).unwrap();
        let proxy = Policy::compile(&serde_json::from_slice::<IntentionSet>(&wire).unwrap());

        for layer in [Layer::L4, Layer::L7] {
            let want = oracle(&all, source, destination, default_allow, layer);
            let a = api.connection(source, layer);
            let p = proxy.connection(source, layer);
            prop_assert_eq!((a.allow, a.matched.clone()), want.clone(), "api, {:?}: {}", layer, a.reason);
            prop_assert_eq!((p.allow, p.matched.clone()), want, "proxy, {:?}: {}", layer, p.reason);
        }
    }
}

/// What a data plane told `source_rule` decides for `source`: the named
/// rule if the policy names it, else the one for every other source.
/// (Permissions here match every request, as the generator writes them.)
fn projected(policy: &Policy, source: &str, layer: Layer) -> (bool, bool) {
    let rule = if policy.named_sources().contains(&source) {
        policy.source_rule(source, layer)
    } else {
        policy.source_rule("*", layer)
    };
    match rule {
        SourceRule::Allow => (true, true),
        SourceRule::Deny => (false, false),
        SourceRule::PerRequest(permissions) => {
            assert!(permissions.iter().all(|(_, m)| m.is_none()));
            let first = permissions.first();
            (
                true,
                first.map_or(policy.default_allow(), |(allow, _)| *allow),
            )
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Envoy is told per source what `Policy` would decide: the projection
    /// gives every source (named or not) the connection and request
    /// decisions of `connection` and `request`.
    #[test]
    fn the_projection_for_data_planes_decides_as_the_policy_does(
        all in intentions(),
        source in 0..4usize,
        destination in 0..2usize,
        default_allow in any::<bool>(),
    ) {
        let source = ["a", "b", "c", "d"][source];
        let destination = DESTINATIONS[destination];
        let policy = Policy::compile(&IntentionSet::for_destination(&all, destination, default_allow));
        let req = get("/");
        for layer in [Layer::L4, Layer::L7] {
            let (connect, request) = projected(&policy, source, layer);
            prop_assert_eq!(connect, policy.connection(source, layer).allow, "{:?} connection", layer);
            if layer == Layer::L7 && connect {
                prop_assert_eq!(request, policy.request(source, &req).allow, "request");
            }
        }
    }
}
