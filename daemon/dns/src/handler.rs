//! The hickory request handler: checks the message, classifies the name and
//! answers from the catalog view, forwards, or refuses.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::{DNSClass, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use crate::answer::{answer, Question};
use crate::config::Settings;
use crate::forward::Forwarder;
use crate::name::{self, Lookup};
use crate::records::{Answer, Zone};
use crate::view::View;

/// Largest UDP payload we offer in EDNS, whatever the client advertises.
const MAX_UDP_PAYLOAD: u16 = 4096;

/// Answers one request from a snapshot of settings and catalog; the
/// transport refreshes both between requests.
#[derive(Clone)]
pub(crate) struct Handler {
    pub settings: Arc<Settings>,
    pub view: Arc<View>,
    /// The address the server is bound to, if specific (glue for `ns.`).
    pub own_ip: Option<IpAddr>,
    pub forwarder: Forwarder,
    /// Prepared queries run against the state itself (templates match
    /// any name under their prefix, so no view can hold their answers).
    pub store: Arc<mesh_state::StateStore>,
}

/// The OPT record we answer an EDNS query with.
pub(crate) fn response_edns(request: &Edns) -> Edns {
    let mut edns = Edns::new();
    edns.set_max_payload(request.max_payload().clamp(512, MAX_UDP_PAYLOAD));
    edns.set_version(0);
    edns
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut reply: R,
    ) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        if request.metadata.message_type == MessageType::Response {
            // Never answer an answer: that is how reflection loops start.
            return not_sent(metadata);
        }
        metadata.recursion_available = !self.settings.recursors.is_empty();
        let edns = request.edns.as_ref().map(response_edns);
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());

        let refusal = if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            Some(ResponseCode::BADVERS)
        } else if request.metadata.op_code != OpCode::Query {
            Some(ResponseCode::NotImp)
        } else if request.queries.len() != 1 {
            Some(ResponseCode::FormErr)
        } else {
            None
        };
        if let Some(code) = refusal {
            metadata.response_code = code;
            return send(&mut reply, builder.build_no_records(metadata)).await;
        }

        let query = &request.queries.queries()[0];
        let qtype = query.query_type();
        let labels: Vec<&[u8]> = query.name().iter().collect();
        let lookup = name::parse(&labels, &self.settings.domains);
        let local = match (query.query_class(), qtype) {
            (DNSClass::IN | DNSClass::ANY, RecordType::AXFR | RecordType::IXFR) => None,
            (DNSClass::IN | DNSClass::ANY, _) => {
                let query_result = match lookup {
                    Lookup::Query { name, .. } => {
                        crate::answer::run_query(&self.store, &self.view, name)
                    }
                    _ => None,
                };
                let zone = Zone {
                    settings: &self.settings,
                    view: &self.view,
                    domain: lookup_domain(&lookup),
                    own_ip: self.own_ip,
                    query: query_result.as_ref(),
                };
                let question = Question {
                    name: query.original().name(),
                    qtype,
                    udp: request.protocol() == Protocol::Udp,
                };
                answer(&zone, &lookup, &question)
            }
            _ => None,
        };
        let Some(local) = local else {
            let foreign = matches!(lookup, Lookup::Foreign | Lookup::Reverse(_));
            let recursors = &self.settings.recursors;
            if foreign && !recursors.is_empty() {
                let timeout = self.settings.recursor_timeout;
                if self
                    .forwarder
                    .spawn(request, reply.clone(), recursors.clone(), timeout)
                {
                    return not_sent(metadata);
                }
                metadata.response_code = ResponseCode::ServFail;
            } else {
                // Zone transfers, other classes, and names nobody here serves.
                metadata.response_code = ResponseCode::Refused;
            }
            return send(&mut reply, builder.build_no_records(metadata)).await;
        };
        send_answer(&mut reply, builder, metadata, local).await
    }
}

/// The domain a lookup was asked under (0 for names outside our domains).
pub(crate) fn lookup_domain(lookup: &Lookup<'_>) -> usize {
    match *lookup {
        Lookup::Apex { domain }
        | Lookup::Nameserver { domain }
        | Lookup::Service { domain, .. }
        | Lookup::Connect { domain, .. }
        | Lookup::Ingress { domain, .. }
        | Lookup::Query { domain, .. }
        | Lookup::Node { domain, .. }
        | Lookup::Addr { domain, .. }
        | Lookup::Missing { domain } => domain,
        Lookup::Reverse(_) | Lookup::Foreign => 0,
    }
}

async fn send_answer<R: ResponseHandler>(
    reply: &mut R,
    builder: MessageResponseBuilder<'_>,
    mut metadata: Metadata,
    answer: Answer,
) -> ResponseInfo {
    metadata.response_code = answer.rcode;
    metadata.authoritative = answer.authoritative;
    metadata.truncation = answer.truncated;
    let response = builder.build(
        metadata,
        answer.answers.iter(),
        answer.authorities.iter(),
        std::iter::empty(),
        answer.additionals.iter(),
    );
    send(reply, response).await
}

async fn send<'a, R: ResponseHandler>(
    reply: &mut R,
    response: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a hickory_server::proto::rr::Record> + Send + 'a,
        impl Iterator<Item = &'a hickory_server::proto::rr::Record> + Send + 'a,
        impl Iterator<Item = &'a hickory_server::proto::rr::Record> + Send + 'a,
        impl Iterator<Item = &'a hickory_server::proto::rr::Record> + Send + 'a,
    >,
) -> ResponseInfo {
    let metadata = *response.metadata();
    match reply.send_response(response).await {
        Ok(info) => info,
        Err(error) => {
            tracing::debug!(%error, "dns: could not send a response");
            let mut failed = metadata;
            failed.response_code = ResponseCode::ServFail;
            not_sent(failed)
        }
    }
}

/// ResponseInfo for a response that was not (or not yet) sent.
fn not_sent(metadata: Metadata) -> ResponseInfo {
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}
