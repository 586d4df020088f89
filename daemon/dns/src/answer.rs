//! Turning a parsed query name into records, from the catalog view alone.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_server::proto::rr::rdata::{PTR, SRV, TXT};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use rand::seq::SliceRandom;

use crate::name::{addr_label, Lookup};
use crate::records::{address, wants_address, Answer, Zone};
use crate::view::{Address, Instance, Known};

/// Most records put in one answer section, whatever the transport: bounds
/// the work of one query on a service with thousands of instances (a TCP
/// message holds about 4,000 A records at most).
pub(crate) const MAX_ANSWERS: usize = 1000;

/// One question as the answer builder needs it.
pub(crate) struct Question<'a> {
    /// The name as asked: owner of the records we return.
    pub name: &'a Name,
    pub qtype: RecordType,
    /// Answer limits for UDP apply.
    pub udp: bool,
}

/// Answer a name in one of our domains, or a reverse name. `None`: not
/// ours to answer (forward or refuse).
pub(crate) fn answer(zone: &Zone<'_>, lookup: &Lookup<'_>, q: &Question<'_>) -> Option<Answer> {
    let answer = match *lookup {
        Lookup::Foreign => return None,
        Lookup::Reverse(ip) => return reverse(zone, ip, q),
        Lookup::Missing { .. } => zone.nx_domain(),
        Lookup::Apex { .. } => apex(zone, q),
        Lookup::Nameserver { .. } => {
            let mut answer = zone.empty();
            if let Some(ip) = zone.own_ip.filter(|ip| wants_address(q.qtype, *ip)) {
                answer.answers.push(address(q.name.clone(), ip, 0));
            }
            or_no_data(zone, answer)
        }
        _ if !in_our_dc(zone, lookup) => zone.nx_domain(),
        Lookup::Service { name, tag, .. } => {
            let all = zone
                .view
                .services
                .get(name)
                .map_or(&[][..], |g| &g.instances[..]);
            instances(zone, q, name, all, tag)
        }
        Lookup::Connect { name, .. } => {
            let all = zone
                .view
                .proxies
                .get(name)
                .map_or(&[][..], |g| &g.instances[..]);
            instances(zone, q, name, all, None)
        }
        Lookup::Ingress { name, .. } => {
            let all = zone
                .view
                .ingress
                .get(name)
                .map_or(&[][..], |g| &g.instances[..]);
            instances(zone, q, name, all, None)
        }
        Lookup::Query { .. } => match zone.query {
            Some(r) => {
                let picked = r.instances.iter().collect();
                instances_picked(zone, q, &r.service, picked, r.ttl)
            }
            None => zone.nx_domain(),
        },
        Lookup::Node { name, .. } => node(zone, q, name),
        Lookup::Addr { ip, .. } => {
            let mut answer = zone.empty();
            if wants_address(q.qtype, ip) {
                answer
                    .answers
                    .push(address(q.name.clone(), ip, zone.settings.node_ttl));
            }
            or_no_data(zone, answer)
        }
    };
    Some(answer)
}

fn in_our_dc(zone: &Zone<'_>, lookup: &Lookup<'_>) -> bool {
    let dc = match lookup {
        Lookup::Service { dc, .. }
        | Lookup::Connect { dc, .. }
        | Lookup::Ingress { dc, .. }
        | Lookup::Query { dc, .. }
        | Lookup::Node { dc, .. }
        | Lookup::Addr { dc, .. } => *dc,
        _ => None,
    };
    dc.is_none_or(|dc| dc.eq_ignore_ascii_case(&zone.settings.datacenter))
}

/// An empty answer becomes NOERROR with the SOA, so resolvers cache the gap.
fn or_no_data(zone: &Zone<'_>, answer: Answer) -> Answer {
    if answer.answers.is_empty() {
        let mut answer = answer;
        answer.authorities.push(zone.soa());
        answer
    } else {
        answer
    }
}

fn apex(zone: &Zone<'_>, q: &Question<'_>) -> Answer {
    let mut answer = zone.empty();
    if matches!(q.qtype, RecordType::SOA | RecordType::ANY) {
        answer.answers.push(zone.soa());
    }
    if matches!(q.qtype, RecordType::NS | RecordType::ANY) {
        zone.ns_records(&mut answer);
    }
    or_no_data(zone, answer)
}

fn node(zone: &Zone<'_>, q: &Question<'_>, name: &str) -> Answer {
    let Some(node) = zone.view.nodes.get(name) else {
        return zone.nx_domain();
    };
    let ttl = zone.settings.node_ttl;
    let mut answer = zone.empty();
    if let Address::Ip(ip) = node.addr {
        if wants_address(q.qtype, ip) {
            answer.answers.push(address(q.name.clone(), ip, ttl));
        }
    }
    if matches!(q.qtype, RecordType::TXT | RecordType::ANY) {
        for txt in &node.txt {
            let rdata = RData::TXT(TXT::new(vec![txt.clone()]));
            answer
                .answers
                .push(Record::from_rdata(q.name.clone(), ttl, rdata));
        }
    }
    or_no_data(zone, answer)
}

fn reverse(zone: &Zone<'_>, ip: IpAddr, q: &Question<'_>) -> Option<Answer> {
    let known = zone.view.known_as(ip);
    if known.is_empty() {
        return None;
    }
    // Not our zone, so neither AA nor an SOA for other types.
    let mut answer = Answer::default();
    if !matches!(q.qtype, RecordType::PTR | RecordType::ANY) {
        return Some(answer);
    }
    let dc = zone.settings.datacenter.as_bytes();
    for k in &known {
        let (target, ttl) = match k {
            Known::Node(node) => (zone.node_name(node), zone.settings.node_ttl),
            Known::Service(svc) => (
                zone.child(&[svc.as_bytes(), b"service", dc]),
                zone.settings.service_ttl(&svc.to_ascii_lowercase()),
            ),
        };
        if let Some(target) = target {
            let rdata = RData::PTR(PTR(target));
            answer
                .answers
                .push(Record::from_rdata(q.name.clone(), ttl, rdata));
        }
    }
    Some(answer)
}

/// A/AAAA or SRV for the healthy instances of a service (or its proxies),
/// in random order, within the answer limits.
fn instances(
    zone: &Zone<'_>,
    q: &Question<'_>,
    service: &str,
    all: &[Instance],
    tag: Option<&str>,
) -> Answer {
    let only_passing = zone.settings.only_passing;
    let picked: Vec<&Instance> = all
        .iter()
        .filter(|i| i.healthy(only_passing) && tag.is_none_or(|t| i.has_tag(t)))
        .collect();
    instances_picked(zone, q, service, picked, None)
}

/// What a prepared query answered, as DNS records need it.
pub(crate) struct QueryResult {
    pub service: String,
    /// Already filtered by the query (health, tags, meta) and by what the
    /// view may show.
    pub instances: Vec<Instance>,
    /// The query's own `DNS.TTL`, if it has one.
    pub ttl: Option<u32>,
}

/// Runs prepared query `name` (an ID, a name or a template's match) on the
/// state; only instances the view shows (readable under DNS's ACL) are kept.
pub(crate) fn run_query(
    store: &mesh_state::StateStore,
    view: &crate::view::View,
    name: &str,
) -> Option<QueryResult> {
    use crate::view::{instance, lower};
    store.read(|s| {
        let query = s.resolve_query(name)?;
        let groups = if query.connect {
            &view.proxies
        } else {
            &view.services
        };
        if !groups.contains_key(&*lower(&query.service)) {
            // Unknown, or not readable with DNS's token: no instances.
            return Some(QueryResult {
                service: query.service.clone(),
                instances: Vec::new(),
                ttl: None,
            });
        }
        let instances = s
            .run_query(&query, "")
            .iter()
            .filter(|h| view.nodes.contains_key(&*lower(&h.node.name)))
            .map(|h| {
                instance(
                    Arc::from(h.node.name.as_str()),
                    h.node,
                    h.service,
                    h.status(),
                )
            })
            .collect();
        let ttl = mesh_types::parse_go_duration(&query.dns_ttl)
            .ok()
            .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        Some(QueryResult {
            service: query.service.clone(),
            instances,
            ttl,
        })
    })
}

/// Records for `picked` instances of `service` (shuffled, bounded by the
/// answer limits); `ttl` overrides the service's TTL.
fn instances_picked(
    zone: &Zone<'_>,
    q: &Question<'_>,
    service: &str,
    mut picked: Vec<&Instance>,
    ttl: Option<u32>,
) -> Answer {
    if picked.is_empty() {
        return zone.nx_domain();
    }
    picked.shuffle(&mut rand::rng());

    let settings = zone.settings;
    let udp_limit = (q.udp && settings.udp_answer_limit > 0).then_some(settings.udp_answer_limit);
    let ttl = ttl.unwrap_or_else(|| settings.service_ttl(service));
    let mut answer = zone.empty();
    let cut = match q.qtype {
        RecordType::A | RecordType::AAAA | RecordType::ANY => {
            let a_limit = (settings.a_record_limit > 0).then_some(settings.a_record_limit);
            let ips = distinct_ips(&picked, q.qtype, a_limit.unwrap_or(MAX_ANSWERS));
            let keep = udp_limit.map_or(ips.len(), |l| l.min(ips.len()));
            for ip in &ips[..keep] {
                answer.answers.push(address(q.name.clone(), *ip, ttl));
            }
            keep < ips.len()
        }
        RecordType::SRV => {
            let limit = udp_limit.unwrap_or(MAX_ANSWERS).min(MAX_ANSWERS);
            let mut targets = HashSet::new();
            for instance in picked.iter().take(limit) {
                srv(zone, q, instance, ttl, &mut targets, &mut answer);
            }
            picked.len() > limit
        }
        _ => false,
    };
    answer.truncated = cut && q.udp && settings.enable_truncate;
    or_no_data(zone, answer)
}

/// Up to `limit` distinct addresses of the asked family, in `picked` order.
fn distinct_ips(picked: &[&Instance], qtype: RecordType, limit: usize) -> Vec<IpAddr> {
    let wanted = picked
        .iter()
        .filter_map(|i| i.addr.ip())
        .filter(|ip| wants_address(qtype, *ip));
    // Most services have a handful of instances: a linear scan beats hashing.
    if picked.len() <= 32 {
        let mut out = Vec::with_capacity(picked.len());
        for ip in wanted {
            if out.len() == limit {
                break;
            }
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
        return out;
    }
    let mut seen = HashSet::new();
    wanted.filter(|ip| seen.insert(*ip)).take(limit).collect()
}

/// One SRV record; the target's address goes in the additional section once.
fn srv(
    zone: &Zone<'_>,
    q: &Question<'_>,
    instance: &Instance,
    ttl: u32,
    targets: &mut HashSet<Name>,
    answer: &mut Answer,
) {
    let dc = zone.settings.datacenter.as_bytes();
    let target = match (&instance.addr, instance.own_address) {
        (Address::Host(host), _) => Some(host.clone()),
        (Address::Ip(ip), true) => zone.child(&[addr_label(*ip).as_bytes(), b"addr", dc]),
        (Address::Ip(_), false) => zone.node_name(&instance.node),
        (Address::None, _) => None,
    };
    let Some(target) = target else { return };
    if let Address::Ip(ip) = instance.addr {
        if targets.insert(target.clone()) {
            answer.additionals.push(address(target.clone(), ip, ttl));
        }
    }
    let rdata = RData::SRV(SRV::new(1, instance.weight, instance.port, target));
    answer
        .answers
        .push(Record::from_rdata(q.name.clone(), ttl, rdata));
}

#[cfg(test)]
mod tests;
