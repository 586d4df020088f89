//! Record construction shared by every answer: owner and target names under
//! our domain, address records, SOA and NS.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::rdata::{A, AAAA, NS, SOA};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};

use crate::config::Settings;
use crate::view::View;

/// SOA timers (Consul's defaults); the minimum is the negative-caching TTL.
const SOA_REFRESH: i32 = 3600;
const SOA_RETRY: i32 = 600;
const SOA_EXPIRE: i32 = 86400;
const SOA_MINIMUM: u32 = 0;

/// A response to one question, before header flags and EDNS are added.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    pub rcode: ResponseCode,
    /// AA: set for names in our domains.
    pub authoritative: bool,
    /// TC: records were left out for the UDP answer limit.
    pub truncated: bool,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
}

/// What every answer for one of our domains needs to know.
pub(crate) struct Zone<'a> {
    pub settings: &'a Settings,
    pub view: &'a View,
    /// Index into `settings.domains` the question was asked under.
    pub domain: usize,
    /// This server's own address, when bound to a specific one (glue for `ns.`).
    pub own_ip: Option<IpAddr>,
    /// For a `.query.` name: what the prepared query answered, if it exists.
    pub query: Option<&'a crate::answer::QueryResult>,
}

impl Zone<'_> {
    pub fn origin(&self) -> &Name {
        &self.settings.domains[self.domain].name
    }

    /// `<labels...>.<domain>`, or None if a label cannot be a DNS label.
    pub fn child(&self, labels: &[&[u8]]) -> Option<Name> {
        Name::from_labels(labels.iter().copied())
            .ok()?
            .append_domain(self.origin())
            .ok()
    }

    /// `<node>.node.<dc>.<domain>`.
    pub fn node_name(&self, node: &str) -> Option<Name> {
        self.child(&[
            node.as_bytes(),
            b"node",
            self.settings.datacenter.as_bytes(),
        ])
    }

    /// `ns.<domain>`: our nameserver when no server registered `consul`.
    fn fallback_ns(&self) -> Option<Name> {
        self.child(&[b"ns"])
    }

    /// An authoritative answer with no records yet.
    pub fn empty(&self) -> Answer {
        Answer {
            authoritative: true,
            ..Answer::default()
        }
    }

    /// The name exists but has no records of the asked type.
    pub fn no_data(&self) -> Answer {
        let mut answer = self.empty();
        answer.authorities.push(self.soa());
        answer
    }

    /// The name does not exist.
    pub fn nx_domain(&self) -> Answer {
        let mut answer = self.no_data();
        answer.rcode = ResponseCode::NXDomain;
        answer
    }

    /// Our SOA, serial from the clock as Consul does.
    pub fn soa(&self) -> Record {
        let origin = self.origin().clone();
        let mname = self
            .nameservers()
            .into_iter()
            .next()
            .map(|(name, _)| name)
            .unwrap_or_else(|| origin.clone());
        let rname = self
            .child(&[b"hostmaster"])
            .unwrap_or_else(|| origin.clone());
        let serial = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        let soa = SOA::new(
            mname,
            rname,
            serial,
            SOA_REFRESH,
            SOA_RETRY,
            SOA_EXPIRE,
            SOA_MINIMUM,
        );
        Record::from_rdata(origin, SOA_MINIMUM, RData::SOA(soa))
    }

    /// Nameserver names with their glue address, if known.
    pub fn nameservers(&self) -> Vec<(Name, Option<IpAddr>)> {
        let listed: Vec<_> = self
            .view
            .nameservers()
            .iter()
            .filter_map(|(node, ip)| Some((self.node_name(node)?, Some(*ip))))
            .collect();
        if !listed.is_empty() {
            return listed;
        }
        self.fallback_ns()
            .map(|name| (name, self.own_ip))
            .into_iter()
            .collect()
    }

    /// NS records for the apex, with glue in the additional section.
    pub fn ns_records(&self, answer: &mut Answer) {
        for (target, glue) in self.nameservers() {
            if let Some(ip) = glue {
                answer.additionals.push(address(target.clone(), ip, 0));
            }
            answer.answers.push(Record::from_rdata(
                self.origin().clone(),
                0,
                RData::NS(NS(target)),
            ));
        }
    }
}

/// An A or AAAA record.
pub(crate) fn address(owner: Name, ip: IpAddr, ttl: u32) -> Record {
    let rdata = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(owner, ttl, rdata)
}

/// Whether an address answers a question of this type.
pub(crate) fn wants_address(qtype: RecordType, ip: IpAddr) -> bool {
    matches!(
        (qtype, ip),
        (RecordType::A | RecordType::ANY, IpAddr::V4(_))
            | (RecordType::AAAA | RecordType::ANY, IpAddr::V6(_))
    )
}
