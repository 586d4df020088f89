//! HTTP checks: one request per run on a fresh connection (Consul disables
//! keep-alive for checks), following up to 10 redirects like Go's client.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::rt::{Read, Write};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use mesh_types::CheckStatus;
use rustls::ClientConfig;
use url::Url;

use crate::output::{head, MAX_OUTPUT_BYTES};
use crate::{tcp, tls, CheckError};

const MAX_REDIRECTS: usize = 10;

/// A prepared HTTP check.
pub(crate) struct HttpProbe {
    url_text: String,
    url: Url,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
    tls_skip_verify: bool,
    /// Built on first use of https, then kept for the check's life.
    tls: Option<Arc<ClientConfig>>,
}

/// What came back from one request.
struct Reply {
    status: StatusCode,
    location: Option<String>,
    body: Vec<u8>,
}

// === impl HttpProbe ===

impl HttpProbe {
    pub(crate) fn new(
        url: &str,
        method: &str,
        headers: &BTreeMap<String, Vec<String>>,
        body: &str,
        tls_skip_verify: bool,
    ) -> Result<HttpProbe, CheckError> {
        let parsed = Url::parse(url)
            .map_err(|e| CheckError::field("HTTP", format!("invalid URL {url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(CheckError::field(
                "HTTP",
                format!("invalid URL {url:?}: expected http(s)://host[:port]/path"),
            ));
        }
        let method = if method.is_empty() { "GET" } else { method };
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| CheckError::field("Method", format!("invalid HTTP method {method:?}")))?;

        // Consul's defaults, each replaced by a header of the same name from the definition.
        let mut map = HeaderMap::new();
        map.insert(
            header::USER_AGENT,
            HeaderValue::from_static("Consul Health Check"),
        );
        map.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/plain, text/*, */*"),
        );
        for (name, values) in headers {
            let field = format!("Header.{name}");
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| CheckError::field(&field, "invalid header name"))?;
            map.remove(&name);
            for value in values {
                let value = HeaderValue::from_str(value).map_err(|_| {
                    CheckError::field(&field, format!("invalid header value {value:?}"))
                })?;
                map.append(name.clone(), value);
            }
        }
        // No keep-alive: a check must not hold a connection open between runs.
        map.insert(header::CONNECTION, HeaderValue::from_static("close"));

        Ok(HttpProbe {
            url_text: url.to_string(),
            url: parsed,
            method,
            headers: map,
            body: Bytes::from(body.to_string()),
            tls_skip_verify,
            tls: None,
        })
    }

    /// Runs the check once: 2xx passing, 429 warning, anything else critical.
    pub(crate) async fn probe(&mut self, timeout: Duration) -> (CheckStatus, String) {
        let prefix = format!("HTTP {} {}", self.method, self.url_text);
        match tokio::time::timeout(timeout, self.request()).await {
            Ok(Ok(reply)) => {
                let status = match reply.status.as_u16() {
                    200..=299 => CheckStatus::Passing,
                    429 => CheckStatus::Warning,
                    _ => CheckStatus::Critical,
                };
                let code = reply.status;
                let reason = code.canonical_reason().unwrap_or("");
                let body = head(&reply.body, MAX_OUTPUT_BYTES);
                let line = format!("{prefix}: {} {reason}", code.as_u16());
                (status, format!("{} Output: {body}", line.trim_end()))
            }
            Ok(Err(e)) => (CheckStatus::Critical, format!("{prefix}: {e}")),
            Err(_) => (
                CheckStatus::Critical,
                format!("{prefix}: timed out after {timeout:?}"),
            ),
        }
    }

    async fn request(&mut self) -> Result<Reply, String> {
        let mut url = self.url.clone();
        let mut method = self.method.clone();
        let mut body = self.body.clone();
        let mut headers = self.headers.clone();
        for _ in 0..=MAX_REDIRECTS {
            let reply = self.send(&url, &method, &headers, body.clone()).await?;
            let code = reply.status.as_u16();
            let Some(location) = reply.location.as_deref().filter(|_| is_redirect(code)) else {
                return Ok(reply);
            };
            let next = url
                .join(location)
                .map_err(|e| format!("redirect to invalid location {location:?}: {e}"))?;
            if !matches!(next.scheme(), "http" | "https") {
                return Err(format!("redirect to unsupported location {location:?}"));
            }
            // Go's rules: 301/302/303 turn into a bodiless GET (HEAD stays HEAD);
            // 307/308 repeat the request as it was.
            if matches!(code, 301..=303) {
                if method != Method::HEAD {
                    method = Method::GET;
                }
                body = Bytes::new();
                headers.remove(header::CONTENT_TYPE);
                headers.remove(header::CONTENT_LENGTH);
            }
            // Credentials do not follow a redirect to another host.
            if next.host_str() != url.host_str() {
                headers.remove(header::AUTHORIZATION);
                headers.remove(header::COOKIE);
                headers.remove(header::WWW_AUTHENTICATE);
            }
            url = next;
        }
        Err(format!("stopped after {MAX_REDIRECTS} redirects"))
    }

    async fn send(
        &mut self,
        url: &Url,
        method: &Method,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Reply, String> {
        let host = url.host_str().ok_or("URL has no host")?.to_string();
        let port = url.port_or_known_default().ok_or("URL has no port")?;
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path)
            .body(Full::new(body))
            .map_err(|e| format!("building request: {e}"))?;
        *req.headers_mut() = headers.clone();
        if !req.headers().contains_key(header::HOST) {
            let authority = match url.port() {
                Some(p) => format!("{host}:{p}"),
                None => host.clone(),
            };
            let value =
                HeaderValue::from_str(&authority).map_err(|e| format!("Host header: {e}"))?;
            req.headers_mut().insert(header::HOST, value);
        }

        let stream = tcp::dial(&host, port).await?;
        if url.scheme() == "https" {
            let config = match &self.tls {
                Some(c) => c.clone(),
                None => {
                    let c = tls::client_config(self.tls_skip_verify, &[b"http/1.1"])?;
                    self.tls = Some(c.clone());
                    c
                }
            };
            let stream = tls::connect(config, &host, stream).await?;
            exchange(TokioIo::new(stream), req).await
        } else {
            exchange(TokioIo::new(stream), req).await
        }
    }
}

fn is_redirect(code: u16) -> bool {
    matches!(code, 301 | 302 | 303 | 307 | 308)
}

/// One HTTP/1.1 exchange on `io`, keeping at most the first 4 KiB of the body.
async fn exchange<IO>(io: IO, req: Request<Full<Bytes>>) -> Result<Reply, String>
where
    IO: Read + Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let mut conn = std::pin::pin!(conn);
    let mut work = std::pin::pin!(async move {
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = resp.into_body();
        let mut buf = Vec::new();
        while buf.len() < MAX_OUTPUT_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        buf.extend_from_slice(&data);
                    }
                }
                // A body cut short still tells the status; keep what arrived.
                Some(Err(_)) | None => break,
            }
        }
        Ok::<_, String>(Reply {
            status,
            location,
            body: buf,
        })
    });
    // The connection must be driven while the request is in flight.
    tokio::select! {
        biased;
        reply = &mut work => reply,
        done = &mut conn => match done {
            Err(e) => Err(e.to_string()),
            Ok(()) => work.await,
        },
    }
}
