//! A per-worker cache of encoded UDP answers for the common case: A/AAAA
//! answers of one service, node or address. Keyed by the query's exact
//! bytes after the ID, so case, flags and EDNS all match; the cached
//! message holds every record, and each hit picks its own random subset
//! and order, so answers stay as random as the slow path's. An entry holds
//! the catalog group it was built from and is used only while the current
//! view still holds that very group (views share unchanged groups), so a
//! write invalidates only the answers it changes; a configuration change
//! clears everything.

use std::collections::HashMap;
use std::sync::Arc;

use hickory_server::proto::op::{Metadata, ResponseCode};
use hickory_server::proto::rr::{DNSClass, RData, RecordType};
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::Request;
use hickory_server::zone_handler::MessageResponseBuilder;
use rand::seq::SliceRandom;
use rustc_hash::FxBuildHasher;

use crate::answer::{answer, Question};
use crate::handler::{lookup_domain, response_edns, Handler};
use crate::name::{self, Lookup};
use crate::records::Zone;
use crate::view::{Group, NodeEntry, View};

/// Distinct queries remembered; past this the cache starts over.
const ENTRIES: usize = 4096;
/// Most records in a cached answer; larger ones take the slow path.
const MAX_RECORDS: usize = 64;

/// A full answer, laid out as header, question, `count` records of
/// `record_len` bytes each, then the rest (the OPT record, if any).
struct Template {
    bytes: Vec<u8>,
    answers_at: usize,
    record_len: usize,
    count: usize,
    depends: Dependency,
}

/// The part of the catalog view an answer was built from.
enum Dependency {
    /// `.addr.` names answer from the name alone.
    Nothing,
    Service(Arc<str>, Arc<Group>),
    Proxies(Arc<str>, Arc<Group>),
    Node(Arc<str>, Arc<NodeEntry>),
}

impl Dependency {
    fn of(lookup: &Lookup<'_>, view: &View) -> Option<Dependency> {
        Some(match *lookup {
            Lookup::Service { name, .. } => {
                let (k, g) = view.services.get_key_value(name)?;
                Dependency::Service(k.clone(), g.clone())
            }
            Lookup::Connect { name, .. } => {
                let (k, g) = view.proxies.get_key_value(name)?;
                Dependency::Proxies(k.clone(), g.clone())
            }
            Lookup::Node { name, .. } => {
                let (k, n) = view.nodes.get_key_value(name)?;
                Dependency::Node(k.clone(), n.clone())
            }
            Lookup::Addr { .. } => Dependency::Nothing,
            _ => return None,
        })
    }

    /// Whether `view` still holds exactly what the answer was built from.
    fn holds(&self, view: &View) -> bool {
        match self {
            Dependency::Nothing => true,
            Dependency::Service(k, g) => view.services.get(k).is_some_and(|c| Arc::ptr_eq(c, g)),
            Dependency::Proxies(k, g) => view.proxies.get(k).is_some_and(|c| Arc::ptr_eq(c, g)),
            Dependency::Node(k, n) => view.nodes.get(k).is_some_and(|c| Arc::ptr_eq(c, n)),
        }
    }
}

enum Entry {
    Answer(Template),
    /// Not cacheable as of the view built from these table indexes; not
    /// examined again until the view changes.
    Uncacheable([u64; 5]),
}

/// Encoded answers by query bytes.
#[derive(Default)]
pub(crate) struct AnswerCache {
    entries: HashMap<Box<[u8]>, Entry, FxBuildHasher>,
}

impl AnswerCache {
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Entries that hold an answer (not counting remembered misses).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        let answers = self.entries.values();
        answers.filter(|e| matches!(e, Entry::Answer(_))).count()
    }

    /// Whether a hit for `query` would be served from the cache.
    #[cfg(test)]
    pub fn holds(&self, query: &[u8], handler: &Handler) -> bool {
        let entry = query.get(2..).and_then(|key| self.entries.get(key));
        matches!(entry, Some(Entry::Answer(t)) if t.depends.holds(&handler.view))
    }

    /// The answer to `query` if it is cached and still current.
    pub fn answer(&mut self, query: &[u8], handler: &Handler) -> Option<Vec<u8>> {
        let key = query.get(2..)?;
        let template = match self.entries.get(key)? {
            Entry::Answer(t) if t.depends.holds(&handler.view) => t,
            Entry::Answer(_) => {
                self.entries.remove(key);
                return None;
            }
            Entry::Uncacheable(_) => return None,
        };
        let settings = &handler.settings;
        let n = template.count;
        let keep = match settings.udp_answer_limit {
            0 => n,
            limit => limit.min(n),
        };
        let mut order: [u8; MAX_RECORDS] = std::array::from_fn(|i| i as u8);
        let (picked, _) = order[..n].partial_shuffle(&mut rand::rng(), keep);
        let t = &template.bytes;
        let mut out = Vec::with_capacity(t.len());
        out.extend_from_slice(&query[..2]);
        out.extend_from_slice(&t[2..template.answers_at]);
        if keep < n && settings.enable_truncate {
            out[2] |= 0x02; // TC
        }
        out[6..8].copy_from_slice(&(keep as u16).to_be_bytes());
        for &i in picked.iter() {
            let at = template.answers_at + usize::from(i) * template.record_len;
            out.extend_from_slice(&t[at..at + template.record_len]);
        }
        out.extend_from_slice(&t[template.answers_at + n * template.record_len..]);
        Some(out)
    }

    /// After the slow path answered `request` over UDP, remember its answer
    /// if it has the cacheable shape.
    pub fn learn(&mut self, raw: &[u8], request: &Request, handler: &Handler) {
        let Some(key) = raw.get(2..) else { return };
        let view = &handler.view;
        match self.entries.get(key) {
            Some(Entry::Uncacheable(built)) if *built == view.built_from => return,
            Some(Entry::Answer(t)) if t.depends.holds(view) => return,
            _ => {}
        }
        if self.entries.len() >= ENTRIES {
            self.entries.clear();
        }
        let entry = match template(request, handler) {
            Some(t) => Entry::Answer(t),
            None => Entry::Uncacheable(view.built_from),
        };
        self.entries.insert(key.into(), entry);
    }
}

fn template(request: &Request, handler: &Handler) -> Option<Template> {
    let settings = &handler.settings;
    // a_record_limit picks a subset before the UDP limit; keep that path simple.
    if settings.a_record_limit > 0 || request.queries.len() != 1 {
        return None;
    }
    if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return None;
    }
    let query = &request.queries.queries()[0];
    let qtype = query.query_type();
    let record_len = match qtype {
        RecordType::A => 16,
        RecordType::AAAA => 28,
        _ => return None,
    };
    if query.query_class() != DNSClass::IN {
        return None;
    }
    let labels: Vec<&[u8]> = query.name().iter().collect();
    let lookup = name::parse(&labels, &settings.domains);
    if !matches!(
        lookup,
        Lookup::Service { .. } | Lookup::Connect { .. } | Lookup::Node { .. } | Lookup::Addr { .. }
    ) {
        return None;
    }
    let depends = Dependency::of(&lookup, &handler.view)?;
    let zone = Zone {
        query: None,
        settings,
        view: &handler.view,
        domain: lookup_domain(&lookup),
        own_ip: handler.own_ip,
    };
    // Every record, in catalog order: hits choose their own subset.
    let question = Question {
        name: query.original().name(),
        qtype,
        udp: false,
    };
    let full = answer(&zone, &lookup, &question)?;
    let count = full.answers.len();
    let shape_ok = full.rcode == ResponseCode::NoError
        && (1..=MAX_RECORDS).contains(&count)
        && full.authorities.is_empty()
        && full.additionals.is_empty()
        && full.answers.iter().all(|r| r.record_type() == qtype);
    if !shape_ok {
        return None;
    }

    // Header, question and OPT from hickory's encoder, with no records...
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.recursion_available = !settings.recursors.is_empty();
    metadata.authoritative = true;
    let edns = request.edns.as_ref().map(response_edns);
    let max_size = edns
        .as_ref()
        .map_or(512, |e| usize::from(e.max_payload().max(512)));
    let response =
        MessageResponseBuilder::new(&request.queries, edns.as_ref()).build_no_records(metadata);
    let mut frame = Vec::with_capacity(128);
    response
        .destructive_emit(&mut BinEncoder::new(&mut frame))
        .ok()?;
    // ...and the records laid out by hand, each owner a pointer to the
    // question name at offset 12, so every record has the same length and
    // any subset in any order is a valid message.
    let answers_at = 12 + request.queries.as_bytes().len();
    if frame.len() < answers_at || frame.len() + count * record_len > max_size {
        return None;
    }
    let mut bytes = Vec::with_capacity(frame.len() + count * record_len);
    bytes.extend_from_slice(&frame[..answers_at]);
    for record in &full.answers {
        let rdata = match &record.data {
            RData::A(a) => a.0.octets().to_vec(),
            RData::AAAA(a) => a.0.octets().to_vec(),
            _ => return None,
        };
        bytes.extend_from_slice(&[0xc0, 0x0c]);
        bytes.extend_from_slice(&u16::from(qtype).to_be_bytes());
        bytes.extend_from_slice(&u16::from(DNSClass::IN).to_be_bytes());
        bytes.extend_from_slice(&record.ttl.to_be_bytes());
        bytes.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        bytes.extend_from_slice(&rdata);
    }
    bytes.extend_from_slice(&frame[answers_at..]);
    Some(Template {
        bytes,
        answers_at,
        record_len,
        count,
        depends,
    })
}

#[cfg(test)]
mod tests;
