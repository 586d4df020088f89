//! gRPC checks: `grpc.health.v1.Health/Check` on a fresh channel per run;
//! SERVING is passing, anything else (or no answer) critical.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use hyper::Uri;
use hyper_util::rt::TokioIo;
use mesh_types::CheckStatus;
use rustls::ClientConfig;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::{tcp, tls};

/// A prepared gRPC check.
pub(crate) struct GrpcProbe {
    target: String,
    addr: String,
    service: String,
    use_tls: bool,
    tls_skip_verify: bool,
    tls: Option<Arc<ClientConfig>>,
}

impl GrpcProbe {
    /// `target` is `host:port` or `host:port/service`.
    pub(crate) fn new(target: &str, use_tls: bool, tls_skip_verify: bool) -> GrpcProbe {
        let (addr, service) = target.split_once('/').unwrap_or((target, ""));
        GrpcProbe {
            target: target.to_string(),
            addr: addr.to_string(),
            service: service.to_string(),
            use_tls,
            tls_skip_verify,
            tls: None,
        }
    }

    /// Runs the check once.
    pub(crate) async fn probe(&mut self, timeout: Duration) -> (CheckStatus, String) {
        let target = self.target.clone();
        match tokio::time::timeout(timeout, self.check(timeout)).await {
            Ok(Ok(ServingStatus::Serving)) => (
                CheckStatus::Passing,
                format!("gRPC check {target}: success"),
            ),
            Ok(Ok(other)) => (
                CheckStatus::Critical,
                format!(
                    "gRPC check {target}: serving status {}",
                    other.as_str_name()
                ),
            ),
            Ok(Err(e)) => (
                CheckStatus::Critical,
                format!("gRPC check {target}: failed: {e}"),
            ),
            Err(_) => (
                CheckStatus::Critical,
                format!("gRPC check {target}: timed out after {timeout:?}"),
            ),
        }
    }

    async fn check(&mut self, timeout: Duration) -> Result<ServingStatus, String> {
        let channel = self.connect(timeout).await?;
        let request = HealthCheckRequest {
            service: self.service.clone(),
        };
        let reply = HealthClient::new(channel)
            .check(request)
            .await
            .map_err(|s| format!("{} ({:?})", s.message(), s.code()))?;
        Ok(reply.into_inner().status())
    }

    async fn connect(&mut self, timeout: Duration) -> Result<Channel, String> {
        let endpoint = Endpoint::from_shared(format!("http://{}", self.addr))
            .map_err(|e| format!("invalid target {:?}: {e}", self.addr))?
            .connect_timeout(timeout)
            .timeout(timeout);
        if !self.use_tls {
            return endpoint.connect().await.map_err(|e| error_chain(&e));
        }
        let config = match &self.tls {
            Some(c) => c.clone(),
            None => {
                let c = tls::client_config(self.tls_skip_verify, &[b"h2"])?;
                self.tls = Some(c.clone());
                c
            }
        };
        // We dial and handshake ourselves, so TLS (with ALPN h2) needs no tonic TLS feature.
        let addr = self.addr.clone();
        let connector = tower::service_fn(move |_: Uri| {
            let addr = addr.clone();
            let config = config.clone();
            async move {
                let stream = tcp::dial_addr(&addr).await.map_err(std::io::Error::other)?;
                let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
                let tls = tls::connect(config, host, stream)
                    .await
                    .map_err(std::io::Error::other)?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        });
        endpoint
            .connect_with_connector(connector)
            .await
            .map_err(|e| error_chain(&e))
    }
}

/// "transport error: connection refused": tonic's top-level message says little alone.
fn error_chain(e: &tonic::transport::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
