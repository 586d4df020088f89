//! The ADS service as tonic serves it, with small codec buffers.
//!
//! The generated server encodes and decodes through 8 KiB buffers per
//! stream, allocated when the stream opens and kept while it idles. Envoy
//! keeps one ADS stream open per proxy for hours, so on a server with
//! thousands of proxies those buffers were most of what an idle stream
//! cost. Here each starts at [`CODEC_BUFFER_BYTES`] and grows only while a
//! larger message passes through.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tonic::codec::{BufferSettings, Codec};
use tonic::codegen::{http, Body, BoxFuture, StdError};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::{ProstDecoder, ProstEncoder};

use crate::ads::Ads;
use crate::MAX_REQUEST_BYTES;

/// Initial size of a stream's encode and decode buffers (tonic's default
/// is 8 KiB each). Most ADS requests (ACKs) are a few hundred bytes.
pub const CODEC_BUFFER_BYTES: usize = 512;

const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// The ADS gRPC service (state of the world and delta).
#[derive(Clone)]
pub struct AdsServer {
    ads: Arc<Ads>,
}

impl AdsServer {
    pub fn new(ads: Ads) -> Self {
        AdsServer { ads: Arc::new(ads) }
    }
}

impl NamedService for AdsServer {
    const NAME: &'static str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
}

/// prost encoding with [`CODEC_BUFFER_BYTES`] buffers.
struct LeanCodec<Req, Resp>(std::marker::PhantomData<fn(Req) -> Resp>);

impl<Req, Resp> Codec for LeanCodec<Req, Resp>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
{
    type Encode = Resp;
    type Decode = Req;
    type Encoder = ProstEncoder<Resp>;
    type Decoder = ProstDecoder<Req>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(settings())
    }
}

fn settings() -> BufferSettings {
    // The yield threshold stays tonic's default (32 KiB).
    BufferSettings::new(CODEC_BUFFER_BYTES, 32 * 1024)
}

struct Sotw(Arc<Ads>);

impl StreamingService<DiscoveryRequest> for Sotw {
    type Response = DiscoveryResponse;
    type ResponseStream = <Ads as AggregatedDiscoveryService>::StreamAggregatedResourcesStream;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<DiscoveryRequest>>) -> Self::Future {
        let ads = self.0.clone();
        Box::pin(async move { ads.stream_aggregated_resources(request).await })
    }
}

struct Delta(Arc<Ads>);

impl StreamingService<DeltaDiscoveryRequest> for Delta {
    type Response = DeltaDiscoveryResponse;
    type ResponseStream = <Ads as AggregatedDiscoveryService>::DeltaAggregatedResourcesStream;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<DeltaDiscoveryRequest>>) -> Self::Future {
        let ads = self.0.clone();
        Box::pin(async move { ads.delta_aggregated_resources(request).await })
    }
}

fn grpc<Req, Resp>() -> Grpc<LeanCodec<Req, Resp>>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
{
    Grpc::new(LeanCodec(std::marker::PhantomData))
        .apply_max_message_size_config(Some(MAX_REQUEST_BYTES), None)
}

impl<B> tonic::codegen::Service<http::Request<B>> for AdsServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let ads = self.ads.clone();
        match request.uri().path() {
            SOTW_PATH => Box::pin(async move {
                Ok(grpc::<DiscoveryRequest, DiscoveryResponse>()
                    .streaming(Sotw(ads), request)
                    .await)
            }),
            DELTA_PATH => Box::pin(async move {
                Ok(grpc::<DeltaDiscoveryRequest, DeltaDiscoveryResponse>()
                    .streaming(Delta(ads), request)
                    .await)
            }),
            _ => Box::pin(async move { Ok(Status::unimplemented("").into_http()) }),
        }
    }
}
