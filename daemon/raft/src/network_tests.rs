//! How the client side maps what a peer does to openraft's errors, which
//! decide whether openraft retries, backs off or gives up. The peer here is
//! a real tonic server on loopback whose answers each test scripts.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mesh_proto::raft::raft_server::{Raft, RaftServer};
use mesh_proto::raft::Payload;
use openraft::error::{Fatal, RPCError, RaftError};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, VoteRequest, VoteResponse};
use openraft::{Entry, EntryPayload, LogId, Vote};
use tonic::{Request, Response, Status};

use super::Network;
use crate::codec::encode;
use crate::{MeshNode, Proposal, TypeConfig};

/// What the scripted peer answers to every call.
#[derive(Clone)]
enum Answer {
    Bytes(Vec<u8>),
    Status(tonic::Code),
    After(Duration),
}

struct Peer(Answer);

impl Peer {
    async fn answer(&self) -> Result<Response<Payload>, Status> {
        match &self.0 {
            Answer::Bytes(data) => Ok(Response::new(Payload { data: data.clone() })),
            Answer::Status(code) => Err(Status::new(*code, "scripted")),
            Answer::After(d) => {
                tokio::time::sleep(*d).await;
                Err(Status::internal("too late"))
            }
        }
    }
}

#[tonic::async_trait]
impl Raft for Peer {
    async fn append_entries(&self, _: Request<Payload>) -> Result<Response<Payload>, Status> {
        self.answer().await
    }
    async fn vote(&self, _: Request<Payload>) -> Result<Response<Payload>, Status> {
        self.answer().await
    }
    async fn install_snapshot(&self, _: Request<Payload>) -> Result<Response<Payload>, Status> {
        self.answer().await
    }
    async fn propose(&self, _: Request<Payload>) -> Result<Response<Payload>, Status> {
        self.answer().await
    }
    async fn read_index(&self, _: Request<Payload>) -> Result<Response<Payload>, Status> {
        self.answer().await
    }
    async fn auto_encrypt_sign(&self, _: Request<Payload>) -> Result<Response<Payload>, Status> {
        self.answer().await
    }
    async fn elect(&self, _: Request<Payload>) -> Result<Response<Payload>, Status> {
        self.answer().await
    }
}

/// A peer answering `answer` on a free loopback port; serves until the test ends.
async fn peer(answer: Answer) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(RaftServer::new(Peer(answer)))
            .serve_with_incoming(incoming),
    );
    addr
}

async fn connection(target: u64, addr: SocketAddr) -> super::Connection {
    Network::default()
        .new_client(
            target,
            &MeshNode {
                rpc_addr: addr.to_string(),
                ..MeshNode::default()
            },
        )
        .await
}

fn vote_request() -> VoteRequest<u64> {
    VoteRequest::new(Vote::new(2, 1), None)
}

fn option() -> RPCOption {
    RPCOption::new(Duration::from_secs(5))
}

type VoteResult = Result<VoteResponse<u64>, RPCError<u64, MeshNode, RaftError<u64>>>;

async fn vote_against(answer: Answer) -> VoteResult {
    let addr = peer(answer).await;
    connection(7, addr)
        .await
        .vote(vote_request(), option())
        .await
}

#[tokio::test]
async fn a_peers_answer_is_decoded() {
    let granted = VoteResponse::new(Vote::new(2, 1), None, true);
    let ok: Result<VoteResponse<u64>, RaftError<u64>> = Ok(granted.clone());
    let got = vote_against(Answer::Bytes(encode(&ok).unwrap())).await;
    assert_eq!(got.unwrap(), granted);
}

#[tokio::test]
async fn a_peers_raft_error_is_remote_and_names_the_peer() {
    let err: Result<VoteResponse<u64>, RaftError<u64>> = Err(RaftError::Fatal(Fatal::Stopped));
    match vote_against(Answer::Bytes(encode(&err).unwrap())).await {
        Err(RPCError::RemoteError(e)) => {
            assert_eq!(e.target, 7);
            assert!(matches!(e.source, RaftError::Fatal(Fatal::Stopped)), "{e}");
        }
        other => panic!("want a remote error, got {other:?}"),
    }
}

#[tokio::test]
async fn an_answer_that_does_not_decode_is_a_network_error() {
    let got = vote_against(Answer::Bytes(vec![0xff; 3])).await;
    assert!(matches!(got, Err(RPCError::Network(_))), "{got:?}");
}

#[tokio::test]
async fn a_grpc_error_is_a_network_error_and_unavailable_is_unreachable() {
    for (code, unreachable) in [
        (tonic::Code::Internal, false),
        (tonic::Code::InvalidArgument, false),
        (tonic::Code::ResourceExhausted, false),
        (tonic::Code::Unavailable, true),
    ] {
        let got = vote_against(Answer::Status(code)).await;
        match (unreachable, &got) {
            (true, Err(RPCError::Unreachable(_))) | (false, Err(RPCError::Network(_))) => {}
            _ => panic!("{code:?}: got {got:?}"),
        }
    }
}

#[tokio::test]
async fn a_peer_with_nothing_listening_is_unreachable() {
    // A port that was free a moment ago: connecting is refused.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let got = connection(3, addr)
        .await
        .vote(vote_request(), option())
        .await;
    assert!(matches!(got, Err(RPCError::Unreachable(_))), "{got:?}");
}

#[tokio::test]
async fn a_slow_peer_fails_the_call_at_its_deadline() {
    let addr = peer(Answer::After(Duration::from_secs(30))).await;
    let started = Instant::now();
    let got = connection(3, addr)
        .await
        .vote(vote_request(), RPCOption::new(Duration::from_millis(300)))
        .await;
    assert!(matches!(got, Err(RPCError::Network(_))), "{got:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the call waited {:?} for a peer past its deadline",
        started.elapsed()
    );
}

/// An AppendEntries of `count` entries of `size` bytes each.
fn append_of(count: u64, size: usize) -> AppendEntriesRequest<TypeConfig> {
    let blob = vec![7u8; size];
    let entries: Vec<Entry<TypeConfig>> = (1..=count)
        .map(|i| Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), i),
            payload: EntryPayload::Normal(Proposal(blob.clone())),
        })
        .collect();
    AppendEntriesRequest {
        vote: Vote::new_committed(1, 1),
        prev_log_id: None,
        entries,
        leader_commit: None,
    }
}

#[tokio::test]
async fn entries_over_the_batch_budget_are_split_before_sending() {
    // Nothing listens: were it sent, the call would be unreachable instead.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    // As many as fit in the budget; a lone entry past it still goes alone.
    for (count, size, hint) in [(5, 800 << 10, 2), (4, 20 << 20, 1), (3, 3 << 20, 1)] {
        let rpc = append_of(count, size);
        let got = connection(3, addr)
            .await
            .append_entries(rpc, option())
            .await;
        match got {
            Err(RPCError::PayloadTooLarge(e)) => {
                assert_eq!(e.entries_hint(), hint, "{count} x {size}: {e}");
            }
            other => panic!("want payload-too-large, got {other:?}"),
        }
    }
    // One entry over the budget is sent as it is (here: to no one).
    let got = connection(3, addr)
        .await
        .append_entries(append_of(1, 3 << 20), option())
        .await;
    assert!(!matches!(got, Err(RPCError::PayloadTooLarge(_))), "{got:?}");
}
