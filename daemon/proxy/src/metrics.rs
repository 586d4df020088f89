//! Counters kept with atomics, rendered in Prometheus text format by the
//! metrics crate's renderer.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Every counter of one proxy.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Inbound connections accepted (TCP).
    pub accepted: AtomicU64,
    /// Inbound connections open now.
    pub active: AtomicU64,
    /// Inbound connections denied by intentions (at handshake or live).
    pub denied: AtomicU64,
    /// Inbound connections closed because a snapshot change denied them.
    pub live_closed: AtomicU64,
    /// Bytes received from peers on the public listener.
    pub bytes_in: AtomicU64,
    /// Bytes sent to peers on the public listener.
    pub bytes_out: AtomicU64,
    /// L7 requests handled.
    pub http_requests: AtomicU64,
    /// L7 requests answered 403.
    pub http_denied: AtomicU64,
    handshake_errors: Mutex<BTreeMap<&'static str, u64>>,
    upstreams: Mutex<BTreeMap<String, Arc<UpstreamMetrics>>>,
}

/// Counters of one upstream.
#[derive(Debug, Default)]
pub struct UpstreamMetrics {
    /// Local connections accepted.
    pub connections: AtomicU64,
    /// Local connections open now.
    pub active: AtomicU64,
    /// Endpoint attempts that failed (connect, timeout, handshake).
    pub attempt_failures: AtomicU64,
    /// Connections dropped because no endpoint worked.
    pub failures: AtomicU64,
    /// Bytes from the local app to the upstream.
    pub bytes_out: AtomicU64,
    /// Bytes from the upstream to the local app.
    pub bytes_in: AtomicU64,
}

impl Metrics {
    /// Counts a failed inbound handshake by reason.
    pub fn handshake_error(&self, reason: &'static str) {
        *self
            .handshake_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    /// Failed inbound handshakes for one reason.
    pub fn handshake_errors(&self, reason: &str) -> u64 {
        let map = self
            .handshake_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.get(reason).copied().unwrap_or(0)
    }

    /// The counters of one upstream, created on first use.
    pub fn upstream(&self, name: &str) -> Arc<UpstreamMetrics> {
        self.upstreams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// Renders all counters in Prometheus text format, through the
    /// metrics crate's renderer (a fresh recorder per scrape, fed the
    /// atomics' current values; the hot path stays plain atomics).
    pub fn render(&self) -> String {
        use metrics::{Key, Label, Level, Metadata, Recorder};
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let meta = Metadata::new(module_path!(), Level::INFO, None);
        let counter = |name: &'static str, help: &'static str, labels: Vec<Label>, v: u64| {
            recorder.describe_counter(name.into(), None, help.into());
            recorder
                .register_counter(&Key::from_parts(name, labels), &meta)
                .absolute(v);
        };
        let gauge = |name: &'static str, help: &'static str, labels: Vec<Label>, v: u64| {
            recorder.describe_gauge(name.into(), None, help.into());
            recorder
                .register_gauge(&Key::from_parts(name, labels), &meta)
                .set(v as f64);
        };
        let load = |a: &AtomicU64| a.load(Relaxed);
        counter(
            "mesh_proxy_inbound_connections_accepted_total",
            "Inbound TCP connections accepted.",
            vec![],
            load(&self.accepted),
        );
        gauge(
            "mesh_proxy_inbound_connections_active",
            "Inbound connections open now.",
            vec![],
            load(&self.active),
        );
        counter(
            "mesh_proxy_inbound_connections_denied_total",
            "Inbound connections denied by intentions.",
            vec![],
            load(&self.denied),
        );
        counter(
            "mesh_proxy_inbound_connections_closed_by_policy_total",
            "Live inbound connections closed after a snapshot change denied them.",
            vec![],
            load(&self.live_closed),
        );
        counter(
            "mesh_proxy_inbound_bytes_received_total",
            "Bytes received from peers on the public listener.",
            vec![],
            load(&self.bytes_in),
        );
        counter(
            "mesh_proxy_inbound_bytes_sent_total",
            "Bytes sent to peers on the public listener.",
            vec![],
            load(&self.bytes_out),
        );
        counter(
            "mesh_proxy_http_requests_total",
            "L7 requests handled.",
            vec![],
            load(&self.http_requests),
        );
        counter(
            "mesh_proxy_http_requests_denied_total",
            "L7 requests denied with 403.",
            vec![],
            load(&self.http_denied),
        );
        for (reason, n) in self
            .handshake_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            counter(
                "mesh_proxy_inbound_handshake_errors_total",
                "Failed inbound TLS handshakes by reason.",
                vec![Label::new("reason", *reason)],
                *n,
            );
        }
        let ups = self.upstreams.lock().unwrap_or_else(|p| p.into_inner());
        for (up, m) in ups.iter() {
            let label = || vec![Label::new("upstream", up.clone())];
            counter(
                "mesh_proxy_upstream_connections_total",
                "Local connections accepted by an upstream listener.",
                label(),
                load(&m.connections),
            );
            gauge(
                "mesh_proxy_upstream_connections_active",
                "Upstream connections open now.",
                label(),
                load(&m.active),
            );
            counter(
                "mesh_proxy_upstream_attempt_failures_total",
                "Endpoint attempts that failed (connect, timeout, handshake).",
                label(),
                load(&m.attempt_failures),
            );
            counter(
                "mesh_proxy_upstream_failures_total",
                "Upstream connections dropped because no endpoint worked.",
                label(),
                load(&m.failures),
            );
            counter(
                "mesh_proxy_upstream_bytes_sent_total",
                "Bytes from the local app to the upstream.",
                label(),
                load(&m.bytes_out),
            );
            counter(
                "mesh_proxy_upstream_bytes_received_total",
                "Bytes from the upstream to the local app.",
                label(),
                load(&m.bytes_in),
            );
        }
        recorder.handle().render()
    }
}

/// Decrements a gauge when dropped.
pub(crate) struct GaugeGuard<'a>(pub &'a AtomicU64);

impl<'a> GaugeGuard<'a> {
    /// Increments `g` and returns a guard that decrements it.
    pub fn inc(g: &'a AtomicU64) -> Self {
        g.fetch_add(1, Relaxed);
        GaugeGuard(g)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// A stream that adds what it reads and writes to two counters as it goes,
/// so `/metrics` moves while long-lived connections are still open.
pub(crate) struct Counted<'a, S> {
    inner: S,
    read: &'a AtomicU64,
    written: &'a AtomicU64,
}

impl<'a, S> Counted<'a, S> {
    /// Counts bytes read from `inner` into `read`, bytes written into `written`.
    pub fn new(inner: S, read: &'a AtomicU64, written: &'a AtomicU64) -> Self {
        Self {
            inner,
            read,
            written,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.read.fetch_add(n as u64, Relaxed);
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            self.written.fetch_add(n as u64, Relaxed);
        }
        res
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.accepted.fetch_add(3, Relaxed);
        m.handshake_error("no_client_cert");
        m.upstream("db").failures.fetch_add(1, Relaxed);
        {
            let _g = GaugeGuard::inc(&m.active);
            assert!(m
                .render()
                .contains("mesh_proxy_inbound_connections_active 1\n"));
        }
        let text = m.render();
        assert!(text.contains("mesh_proxy_inbound_connections_accepted_total 3\n"));
        assert!(text.contains("mesh_proxy_inbound_connections_active 0\n"));
        assert!(text
            .contains("mesh_proxy_inbound_handshake_errors_total{reason=\"no_client_cert\"} 1\n"));
        assert!(text.contains("mesh_proxy_upstream_failures_total{upstream=\"db\"} 1\n"));
    }
}
