//! go-plugin's side of the handshake: check the magic cookie, agree on
//! protocol 6, listen on loopback, print the handshake line, and serve the
//! provider next to GRPCController, GRPCStdio and gRPC health.

use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::proto::{health, plugin, tfplugin6};
use crate::provider::Provider;
use crate::server::ProviderService;
use crate::Error;

/// The cookie Terraform sets so plugins know they run under it.
pub const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
/// Its value.
pub const MAGIC_COOKIE_VALUE: &str =
    "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";

/// What the handshake decided, from the environment Terraform gave us.
#[derive(Debug, Clone, PartialEq)]
pub struct Handshake {
    /// PEM client certificate for AutoMTLS, if Terraform asked for it.
    pub client_cert: Option<String>,
}

impl Handshake {
    /// Checks the environment: magic cookie and protocol 6 among the offered versions.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Handshake, Error> {
        if get(MAGIC_COOKIE_KEY).as_deref() != Some(MAGIC_COOKIE_VALUE) {
            return Err(Error::Handshake(
                "this binary is a Terraform plugin: Terraform starts it; it is not meant to be run directly".into(),
            ));
        }
        let versions = get("PLUGIN_PROTOCOL_VERSIONS").unwrap_or_default();
        if !versions.split(',').any(|v| v.trim() == "6") {
            return Err(Error::Handshake(format!(
                "Terraform offered plugin protocol versions {versions:?}; this provider speaks 6 (Terraform 1.0 or newer)"
            )));
        }
        Ok(Handshake {
            client_cert: get("PLUGIN_CLIENT_CERT").filter(|c| !c.trim().is_empty()),
        })
    }
}

/// The line go-plugin reads from stdout.
pub fn handshake_line(addr: std::net::SocketAddr, cert_der: Option<&[u8]>) -> String {
    let cert = cert_der
        .map(|d| base64::engine::general_purpose::STANDARD_NO_PAD.encode(d))
        .unwrap_or_default();
    format!("1|6|tcp|{addr}|grpc|{cert}")
}

/// Runs `provider` as Terraform's plugin until Terraform shuts it down.
pub async fn serve(provider: Arc<dyn Provider>) -> Result<(), Error> {
    let hs = Handshake::from_env(|k| std::env::var(k).ok())?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mtls = hs
        .client_cert
        .as_deref()
        .map(crate::tls::auto_mtls)
        .transpose()?;
    let service = ProviderService::new(provider);
    let (stop_tx, stop_rx) = watch::channel(false);

    let line = handshake_line(addr, mtls.as_ref().map(|m| m.cert_der.as_slice()));
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    let acceptor = mtls.map(|m| tokio_rustls::TlsAcceptor::from(m.config));
    let incoming = accept_loop(listener, acceptor, stop_rx.clone());

    let mut stopped = stop_rx.clone();
    let server = tonic::transport::Server::builder()
        .add_service(
            tfplugin6::provider_server::ProviderServer::new(service)
                .max_decoding_message_size(256 << 20),
        )
        .add_service(plugin::grpc_controller_server::GrpcControllerServer::new(
            Controller(stop_tx),
        ))
        .add_service(plugin::grpc_stdio_server::GrpcStdioServer::new(Stdio(
            stop_rx.clone(),
        )))
        .add_service(health::health_server::HealthServer::new(Health))
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stopped.wait_for(|s| *s).await;
        });
    let mut stopped = stop_rx;
    tokio::select! {
        res = server => res.map_err(|e| Error::Transport(e.to_string())),
        _ = async {
            let _ = stopped.wait_for(|s| *s).await;
            // Let the Shutdown answer reach Terraform, then exit without waiting
            // for Terraform to close its connection (it waits for our exit).
            tokio::time::sleep(Duration::from_millis(20)).await;
        } => Ok(()),
    }
}

/// Accepted connections, TLS-wrapped when AutoMTLS is on; handshakes run concurrently.
fn accept_loop(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) -> tokio_stream::wrappers::ReceiverStream<Result<Conn, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => { tracing::warn!(error = %e, "accept failed"); continue; }
                },
                _ = stop.wait_for(|s| *s) => return,
            };
            let _ = tcp.set_nodelay(true);
            let tx = tx.clone();
            match &acceptor {
                None => {
                    let _ = tx.send(Ok(Conn::Plain(tcp))).await;
                }
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        match acceptor.accept(tcp).await {
                            Ok(tls) => {
                                let _ = tx.send(Ok(Conn::Tls(Box::new(tls)))).await;
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "TLS handshake with Terraform failed")
                            }
                        }
                    });
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// A plugin connection, plain or TLS.
pub enum Conn {
    /// No AutoMTLS (debug runs).
    Plain(TcpStream),
    /// AutoMTLS.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

// === side services ===

struct Controller(watch::Sender<bool>);

#[tonic::async_trait]
impl plugin::grpc_controller_server::GrpcController for Controller {
    async fn shutdown(&self, _: Request<plugin::Empty>) -> Result<Response<plugin::Empty>, Status> {
        let _ = self.0.send(true);
        Ok(Response::new(plugin::Empty {}))
    }
}

struct Stdio(watch::Receiver<bool>);

type BoxStream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl plugin::grpc_stdio_server::GrpcStdio for Stdio {
    type StreamStdioStream = BoxStream<plugin::StdioData>;

    /// Our output goes to stderr directly; the stream stays open, empty, until shutdown.
    async fn stream_stdio(
        &self,
        _: Request<plugin::Empty>,
    ) -> Result<Response<Self::StreamStdioStream>, Status> {
        let mut stop = self.0.clone();
        let stream = futures::stream::once(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .filter_map(|_| async { None });
        Ok(Response::new(Box::pin(stream)))
    }
}

struct Health;

#[tonic::async_trait]
impl health::health_server::Health for Health {
    type WatchStream = BoxStream<health::HealthCheckResponse>;

    async fn check(
        &self,
        req: Request<health::HealthCheckRequest>,
    ) -> Result<Response<health::HealthCheckResponse>, Status> {
        Ok(Response::new(health::HealthCheckResponse {
            status: serving(&req.get_ref().service) as i32,
        }))
    }

    async fn watch(
        &self,
        req: Request<health::HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let status = serving(&req.get_ref().service) as i32;
        let first =
            futures::stream::once(async move { Ok(health::HealthCheckResponse { status }) });
        Ok(Response::new(Box::pin(
            first.chain(futures::stream::pending()),
        )))
    }
}

fn serving(service: &str) -> health::health_check_response::ServingStatus {
    use health::health_check_response::ServingStatus;
    if service.is_empty() || service == "plugin" {
        ServingStatus::Serving
    } else {
        ServingStatus::ServiceUnknown
    }
}

use futures::StreamExt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_requires_cookie_and_v6() {
        let env = |cookie: &'static str, versions: &'static str| {
            move |k: &str| match k {
                MAGIC_COOKIE_KEY => Some(cookie.to_string()),
                "PLUGIN_PROTOCOL_VERSIONS" => Some(versions.to_string()),
                _ => None,
            }
        };
        assert!(Handshake::from_env(env("nope", "6")).is_err());
        assert!(Handshake::from_env(env(MAGIC_COOKIE_VALUE, "4,5")).is_err());
        let hs = Handshake::from_env(env(MAGIC_COOKIE_VALUE, "5,6")).unwrap();
        assert_eq!(hs.client_cert, None);
        let line = handshake_line("127.0.0.1:1234".parse().unwrap(), Some(&[1, 2, 3, 4]));
        assert_eq!(line, "1|6|tcp|127.0.0.1:1234|grpc|AQIDBA");
    }
}
