//! Which endpoint a connection or request goes to, by the resolver's
//! load-balancer policy: round robin (the default), random, least request
//! (the less busy of two picked at random), or a consistent hash
//! (`ring_hash`, `maglev`) of the request's header, cookie, query
//! parameter or source address, so the same key keeps reaching the same
//! instance while the set of instances stays the same.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use mesh_chain::entries::LoadBalancer;
use rand::Rng;

use crate::snapshot::Endpoint;

/// What a request offers to hash on.
#[derive(Default)]
pub(crate) struct HashInputs<'r> {
    pub headers: Option<&'r hyper::HeaderMap>,
    pub query: Option<&'r str>,
    pub source: Option<IpAddr>,
}

/// The key the policy's hash policies take from a request: the first that
/// applies (a terminal one that applies ends the search), or none.
pub(crate) fn hash_key(lb: &LoadBalancer, inputs: &HashInputs<'_>) -> Option<u64> {
    let mut hasher: Option<std::collections::hash_map::DefaultHasher> = None;
    for policy in &lb.hashpolicies {
        let value: Option<String> = match policy.field.as_str() {
            "header" => inputs
                .headers
                .and_then(|h| h.get(policy.fieldvalue.as_str()))
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            "cookie" => inputs.headers.and_then(|h| cookie(h, &policy.fieldvalue)),
            "query_parameter" => inputs.query.and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| *k == policy.fieldvalue)
                    .map(|(_, v)| v.into_owned())
            }),
            _ if policy.sourceip => inputs.source.map(|ip| ip.to_string()),
            _ => None,
        };
        if let Some(v) = value {
            let h = hasher.get_or_insert_with(Default::default);
            v.hash(h);
            if policy.terminal {
                break;
            }
        }
    }
    hasher.map(|h| h.finish())
}

fn cookie(headers: &hyper::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
}

/// Requests in flight per endpoint (least request).
#[derive(Default)]
pub(crate) struct Active(Mutex<HashMap<(String, u16), usize>>);

/// Holds one request's place in [`Active`] until dropped.
pub(crate) struct InFlight {
    active: Arc<Active>,
    key: (String, u16),
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut map = self.active.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

impl Active {
    fn count(&self, ep: &Endpoint) -> usize {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(ep.address.clone(), ep.port))
            .copied()
            .unwrap_or(0)
    }

    /// Counts a request to `ep` until the guard is dropped.
    pub(crate) fn start(self: &Arc<Self>, ep: &Endpoint) -> InFlight {
        let key = (ep.address.clone(), ep.port);
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default() += 1;
        InFlight {
            active: self.clone(),
            key,
        }
    }
}

/// The endpoint to try first: an index into `endpoints` (not empty).
pub(crate) fn pick(
    lb: Option<&LoadBalancer>,
    endpoints: &[Endpoint],
    next: &AtomicUsize,
    active: &Active,
    key: Option<u64>,
) -> usize {
    let n = endpoints.len();
    let policy = lb.map_or("", |l| l.policy.as_str());
    match policy {
        "random" => rand::rng().random_range(0..n),
        "least_request" if n > 1 => {
            let mut rng = rand::rng();
            let a = rng.random_range(0..n);
            let b = (a + rng.random_range(1..n)) % n;
            if active.count(&endpoints[b]) < active.count(&endpoints[a]) {
                b
            } else {
                a
            }
        }
        "ring_hash" | "maglev" if key.is_some() => {
            highest_random_weight(endpoints, key.unwrap_or(0))
        }
        _ => next.fetch_add(1, Relaxed) % n,
    }
}

/// Rendezvous hashing: the endpoint whose hash with `key` is highest.
/// Consistent as ring hash and maglev are: removing an endpoint moves only
/// the keys it held.
fn highest_random_weight(endpoints: &[Endpoint], key: u64) -> usize {
    let state =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
    endpoints
        .iter()
        .enumerate()
        .max_by_key(|(_, ep)| state.hash_one((key, &ep.address, ep.port)))
        .map_or(0, |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_chain::entries::HashPolicy;

    fn eps(n: u16) -> Vec<Endpoint> {
        (0..n)
            .map(|i| Endpoint {
                address: "10.0.0.1".into(),
                port: 1000 + i,
                ..Default::default()
            })
            .collect()
    }

    fn ring(field: &str, value: &str) -> LoadBalancer {
        LoadBalancer {
            policy: "ring_hash".into(),
            hashpolicies: vec![HashPolicy {
                field: field.into(),
                fieldvalue: value.into(),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn a_hash_key_keeps_its_endpoint_and_removing_another_moves_nothing_else() {
        let lb = ring("header", "x-user");
        let (next, active) = (AtomicUsize::new(0), Active::default());
        let all = eps(5);
        let mut owners = HashMap::new();
        for user in 0..200 {
            let mut h = hyper::HeaderMap::new();
            h.insert("x-user", format!("u{user}").parse().unwrap());
            let inputs = HashInputs {
                headers: Some(&h),
                ..Default::default()
            };
            let key = hash_key(&lb, &inputs);
            let first = pick(Some(&lb), &all, &next, &active, key);
            assert_eq!(first, pick(Some(&lb), &all, &next, &active, key));
            owners.insert(user, (key, all[first].port));
        }
        let used: std::collections::BTreeSet<u16> = owners.values().map(|(_, p)| *p).collect();
        assert_eq!(used.len(), 5, "200 users spread over every endpoint");
        // Without endpoint 1002, only its users move.
        let fewer: Vec<Endpoint> = all.iter().filter(|e| e.port != 1002).cloned().collect();
        for (key, port) in owners.values() {
            let now = fewer[pick(Some(&lb), &fewer, &next, &active, *key)].port;
            if *port != 1002 {
                assert_eq!(now, *port);
            }
        }
    }

    #[test]
    fn cookies_query_parameters_and_terminal_policies() {
        let mut h = hyper::HeaderMap::new();
        h.insert(hyper::header::COOKIE, "a=1; session=abc".parse().unwrap());
        let inputs = HashInputs {
            headers: Some(&h),
            query: Some("x=1&user=bob"),
            ..Default::default()
        };
        assert!(hash_key(&ring("cookie", "session"), &inputs).is_some());
        assert!(hash_key(&ring("cookie", "nope"), &inputs).is_none());
        assert_eq!(
            hash_key(&ring("query_parameter", "user"), &inputs),
            hash_key(
                &ring("query_parameter", "user"),
                &HashInputs {
                    query: Some("user=bob"),
                    ..Default::default()
                }
            )
        );
    }

    #[test]
    fn least_request_prefers_the_idle_endpoint() {
        let lb = LoadBalancer {
            policy: "least_request".into(),
            ..Default::default()
        };
        let all = eps(2);
        let active = Arc::new(Active::default());
        let _busy: Vec<InFlight> = (0..5).map(|_| active.start(&all[0])).collect();
        for _ in 0..50 {
            assert_eq!(
                pick(Some(&lb), &all, &AtomicUsize::new(0), &active, None),
                1
            );
        }
    }
}

/// Passive health checks: endpoints that failed too often in a row are
/// left out for a while (outlier ejection).
#[derive(Default)]
pub(crate) struct Outliers(Mutex<OutlierState>);

#[derive(Default)]
struct OutlierState {
    failures: HashMap<(String, u16), u32>,
    ejected: HashMap<(String, u16), std::time::Instant>,
}

impl Outliers {
    /// `start`, or the first endpoint after it that is not ejected (all
    /// ejected: `start`, as a request must go somewhere).
    pub(crate) fn skip_ejected(&self, start: usize, endpoints: &[Endpoint]) -> usize {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        state.ejected.retain(|_, until| *until > now);
        if state.ejected.is_empty() {
            return start;
        }
        let n = endpoints.len();
        (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| {
                let ep = &endpoints[i];
                !state.ejected.contains_key(&(ep.address.clone(), ep.port))
            })
            .unwrap_or(start)
    }

    /// Records how a connection or request to `ep` went.
    pub(crate) fn record(
        &self,
        ep: &Endpoint,
        ok: bool,
        policy: Option<&crate::snapshot::Outlier>,
        endpoints: usize,
    ) {
        let Some(policy) = policy else { return };
        let key = (ep.address.clone(), ep.port);
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if ok {
            state.failures.remove(&key);
            return;
        }
        let failures = state.failures.entry(key.clone()).or_default();
        *failures += 1;
        if *failures < policy.max_failures {
            return;
        }
        state.failures.remove(&key);
        let now = std::time::Instant::now();
        state.ejected.retain(|_, until| *until > now);
        let cap = (endpoints * policy.max_ejection_percent as usize / 100).max(1);
        if state.ejected.len() < cap {
            let until = now + std::time::Duration::from_millis(policy.base_ejection_ms);
            tracing::info!(endpoint = %format!("{}:{}", key.0, key.1), "ejected after consecutive failures");
            state.ejected.insert(key, until);
        }
    }
}
