//! The query-name grammar: which catalog lookup a name asks for.
//!
//! Pure and allocation-free so it can be fuzzed on its own
//! (`daemon/dns/fuzz`). Labels are compared without regard to ASCII case;
//! the names it returns borrow the caller's labels unchanged.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What a query name asks for. `domain` indexes the domains passed to
/// [`parse`] (0: `domain`, 1: `alt_domain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// The domain itself: SOA and NS.
    Apex { domain: usize },
    /// `ns.<domain>`: the name our NS and SOA records point to.
    Nameserver { domain: usize },
    /// `[tag.]<svc>.service[.<dc>].<domain>` or RFC 2782
    /// `_<svc>._<tag|tcp>.service[.<dc>].<domain>`.
    Service {
        domain: usize,
        name: &'a str,
        tag: Option<&'a str>,
        dc: Option<&'a str>,
    },
    /// `<svc>.connect[.<dc>].<domain>`: the service's sidecar proxies.
    Connect {
        domain: usize,
        name: &'a str,
        dc: Option<&'a str>,
    },
    /// `<svc>.ingress[.<dc>].<domain>`: the ingress gateways exposing it.
    Ingress {
        domain: usize,
        name: &'a str,
        dc: Option<&'a str>,
    },
    /// `<name or ID>.query[.<dc>].<domain>`: a prepared query's answer.
    Query {
        domain: usize,
        name: &'a str,
        dc: Option<&'a str>,
    },
    /// `<node>.node[.<dc>].<domain>`.
    Node {
        domain: usize,
        name: &'a str,
        dc: Option<&'a str>,
    },
    /// `<hex address>.addr[.<dc>].<domain>`: the target of SRV records for
    /// instances with their own address.
    Addr {
        domain: usize,
        ip: IpAddr,
        dc: Option<&'a str>,
    },
    /// A name under `in-addr.arpa.` or `ip6.arpa.` naming one address.
    Reverse(IpAddr),
    /// A name in one of our domains that cannot name anything (NXDOMAIN).
    Missing { domain: usize },
    /// Not ours: forwarded to a recursor, or refused.
    Foreign,
}

/// Split presentation text (`web.service.consul.`) into labels; a test and
/// fuzzing aid, since the server reads labels off the wire.
pub fn split_labels(name: &str) -> Vec<&[u8]> {
    name.trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
        .map(str::as_bytes)
        .collect()
}

/// Classify a query name given as labels (left to right, no root label)
/// against our domains (each as labels, left to right).
pub fn parse<'a, D: AsRef<[Vec<u8>]>>(labels: &[&'a [u8]], domains: &[D]) -> Lookup<'a> {
    // The longest matching domain wins, so `alt.consul.` can sit under `consul.`.
    let matched = domains
        .iter()
        .enumerate()
        .filter(|(_, d)| ends_with(labels, d.as_ref()))
        .max_by_key(|(_, d)| d.as_ref().len());
    let Some((domain, suffix)) = matched else {
        return reverse(labels).map_or(Lookup::Foreign, Lookup::Reverse);
    };
    let rest = &labels[..labels.len() - suffix.as_ref().len()];
    parse_in_domain(rest, domain).unwrap_or(Lookup::Missing { domain })
}

fn parse_in_domain<'a>(rest: &[&'a [u8]], domain: usize) -> Option<Lookup<'a>> {
    let n = rest.len();
    if n == 0 {
        return Some(Lookup::Apex { domain });
    }
    if n == 1 && rest[0].eq_ignore_ascii_case(b"ns") {
        return Some(Lookup::Nameserver { domain });
    }
    // The kind is the last label, or the one before a datacenter label.
    let (kind_at, dc) = if is_kind(rest[n - 1]) {
        (n - 1, None)
    } else if n >= 2 && is_kind(rest[n - 2]) {
        (n - 2, Some(text(rest[n - 1])?))
    } else {
        return None;
    };
    let parts = &rest[..kind_at];
    let kind = rest[kind_at];
    if kind.eq_ignore_ascii_case(b"service") {
        return service(parts, domain, dc);
    }
    let [one] = parts else { return None };
    if kind.eq_ignore_ascii_case(b"node") {
        Some(Lookup::Node {
            domain,
            name: text(one)?,
            dc,
        })
    } else if kind.eq_ignore_ascii_case(b"connect") {
        Some(Lookup::Connect {
            domain,
            name: text(one)?,
            dc,
        })
    } else if kind.eq_ignore_ascii_case(b"query") {
        Some(Lookup::Query {
            domain,
            name: text(one)?,
            dc,
        })
    } else if kind.eq_ignore_ascii_case(b"ingress") {
        Some(Lookup::Ingress {
            domain,
            name: text(one)?,
            dc,
        })
    } else {
        Some(Lookup::Addr {
            domain,
            ip: hex_addr(one)?,
            dc,
        })
    }
}

fn service<'a>(parts: &[&'a [u8]], domain: usize, dc: Option<&'a str>) -> Option<Lookup<'a>> {
    let (name, tag) = match parts {
        [name] => (*name, None),
        // RFC 2782: `_web._tcp` is every instance, `_web._<tag>` filters.
        [name, proto] if name.starts_with(b"_") && proto.starts_with(b"_") => {
            let tag = &proto[1..];
            let tag = (!tag.eq_ignore_ascii_case(b"tcp")).then_some(tag);
            (&name[1..], tag)
        }
        [tag, name] => (*name, Some(*tag)),
        _ => return None,
    };
    if name.is_empty() || tag.is_some_and(<[u8]>::is_empty) {
        return None;
    }
    let tag = match tag {
        Some(tag) => Some(text(tag)?),
        None => None,
    };
    Some(Lookup::Service {
        domain,
        name: text(name)?,
        tag,
        dc,
    })
}

fn is_kind(label: &[u8]) -> bool {
    [
        &b"service"[..],
        b"node",
        b"connect",
        b"ingress",
        b"query",
        b"addr",
    ]
    .iter()
    .any(|k| label.eq_ignore_ascii_case(k))
}

fn ends_with(labels: &[&[u8]], suffix: &[Vec<u8>]) -> bool {
    labels.len() >= suffix.len()
        && labels[labels.len() - suffix.len()..]
            .iter()
            .zip(suffix)
            .all(|(a, b)| a.eq_ignore_ascii_case(b))
}

fn text(label: &[u8]) -> Option<&str> {
    std::str::from_utf8(label).ok()
}

/// Consul's `.addr.` encoding: 8 hex digits for IPv4, 32 for IPv6.
fn hex_addr(label: &[u8]) -> Option<IpAddr> {
    let text = text(label)?;
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    match text.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(text, 16).ok()?,
        ))),
        32 => Some(IpAddr::V6(Ipv6Addr::from(
            u128::from_str_radix(text, 16).ok()?,
        ))),
        _ => None,
    }
}

/// The label Consul uses for an address in `.addr.` names.
pub fn addr_label(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{:08x}", u32::from(v4)),
        IpAddr::V6(v6) => format!("{:032x}", u128::from(v6)),
    }
}

/// A complete reverse name: four octets under `in-addr.arpa`, or 32 nibbles
/// under `ip6.arpa`.
fn reverse(labels: &[&[u8]]) -> Option<IpAddr> {
    let (body, zone) = labels.split_at(labels.len().checked_sub(2)?);
    if !zone[1].eq_ignore_ascii_case(b"arpa") {
        return None;
    }
    if zone[0].eq_ignore_ascii_case(b"in-addr") && body.len() == 4 {
        let mut octets = [0u8; 4];
        for (slot, label) in octets.iter_mut().rev().zip(body) {
            if label.is_empty() || label.len() > 3 || !label.iter().all(u8::is_ascii_digit) {
                return None;
            }
            *slot = text(label)?.parse().ok()?;
        }
        return Some(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    if zone[0].eq_ignore_ascii_case(b"ip6") && body.len() == 32 {
        let mut value: u128 = 0;
        for label in body.iter().rev() {
            let [digit] = label else { return None };
            let nibble = (*digit as char).to_digit(16)?;
            value = (value << 4) | u128::from(nibble);
        }
        return Some(IpAddr::V6(Ipv6Addr::from(value)));
    }
    None
}

#[cfg(test)]
mod tests;
