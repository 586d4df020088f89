//! A terminating gateway's side of a connection: the caller named a
//! linked service by SNI (and was answered with that service's leaf); its
//! intentions decide, now and on every change, and the bytes go on to an
//! instance of the service outside the mesh, in TLS when the gateway's
//! entry gives a CA for it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsConnector;

use crate::inbound::{close, guarded_by, Wire, COPY_BUF};
use crate::proxy::Ctx;
use crate::snapshot::{LinkedService, Protocol};

/// How long the gateway waits to reach an instance outside the mesh.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Spreads connections over a linked service's instances.
static NEXT: AtomicUsize = AtomicUsize::new(0);

pub(crate) async fn serve(ctx: Arc<Ctx>, tls: TlsStream<Wire>, source: String, peer: SocketAddr) {
    let m = ctx.current.get();
    let sni = tls.get_ref().1.server_name().map(str::to_string);
    let Some(linked) = m.linked_for(sni.as_deref()) else {
        tracing::info!(%peer, %source, sni = ?sni, "terminating gateway: no linked service for this SNI");
        close(tls).await;
        return;
    };
    let service = m.snap.linked[linked.index].clone();
    let verdict = linked.policy.connection(&source, Protocol::Tcp.layer());
    drop(m);
    if !verdict.allow {
        ctx.metrics.denied.fetch_add(1, Relaxed);
        tracing::info!(%peer, %source, service = %service.service, reason = %verdict.reason, "terminating gateway: intention denies");
        close(tls).await;
        return;
    }
    let name = service.service.clone();
    // Each change re-reads the linked service's intentions.
    let check =
        |m: &crate::state::Material| match m.snap.linked.iter().position(|l| l.service == name) {
            Some(i) => {
                let sni = m.snap.linked[i].sni.clone();
                match m.linked_for(Some(&sni)) {
                    Some(l) => l.policy.connection(&source, Protocol::Tcp.layer()),
                    None => gone(),
                }
            }
            None => gone(),
        };
    let work = async {
        match dial(&service).await {
            Ok(Outside::Plain(mut out)) => {
                let mut tls = tls;
                let _ = tokio::io::copy_bidirectional_with_sizes(
                    &mut tls, &mut out, COPY_BUF, COPY_BUF,
                )
                .await;
            }
            Ok(Outside::Tls(mut out)) => {
                let mut tls = tls;
                let _ = tokio::io::copy_bidirectional_with_sizes(
                    &mut tls, &mut *out, COPY_BUF, COPY_BUF,
                )
                .await;
            }
            Err(e) => {
                tracing::warn!(%peer, %source, service = %service.service, error = %e, "terminating gateway: the service is unreachable");
            }
        }
    };
    let _ = guarded_by(&ctx, &source, peer, check, work).await;
}

fn gone() -> mesh_policy::Verdict {
    mesh_policy::Verdict {
        allow: false,
        matched: None,
        reason: "the service is no longer linked to this gateway".into(),
    }
}

enum Outside {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

async fn dial(service: &LinkedService) -> std::io::Result<Outside> {
    let n = service.endpoints.len();
    if n == 0 {
        return Err(std::io::Error::other("no healthy instance"));
    }
    let ep = &service.endpoints[NEXT.fetch_add(1, Relaxed) % n];
    let tcp = tokio::time::timeout(
        DIAL_TIMEOUT,
        TcpStream::connect((ep.address.as_str(), ep.port)),
    )
    .await
    .map_err(|_| std::io::Error::other(format!("{}:{}: timed out", ep.address, ep.port)))??;
    let _ = tcp.set_nodelay(true);
    if service.ca_file.is_empty() {
        return Ok(Outside::Plain(tcp));
    }
    let config = origination(service)?;
    let name = if service.tls_server_name.is_empty() {
        ep.address.clone()
    } else {
        service.tls_server_name.clone()
    };
    let name = ServerName::try_from(name).map_err(std::io::Error::other)?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    Ok(Outside::Tls(Box::new(tls)))
}

/// TLS to the service: trust the entry's CA file, present its client
/// certificate if it names one. The files are read for each connection,
/// so replacing them needs no restart.
fn origination(service: &LinkedService) -> std::io::Result<rustls::ClientConfig> {
    let bad =
        |what: &str, file: &str, e: String| std::io::Error::other(format!("{what} {file}: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&service.ca_file)
        .map_err(|e| bad("CAFile", &service.ca_file, e.to_string()))?
    {
        let cert = cert.map_err(|e| bad("CAFile", &service.ca_file, e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| bad("CAFile", &service.ca_file, e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots);
    if service.cert_file.is_empty() {
        return Ok(builder.with_no_client_auth());
    }
    let (chain, key) = crate::tls::certificate_files(&service.cert_file, &service.key_file)?;
    builder
        .with_client_auth_cert(chain, key)
        .map_err(|e| bad("CertFile", &service.cert_file, e.to_string()))
}
