//! Guards every request passes (from the ACL middleware, the one layer
//! every route has): a server whose storage failed refuses (see
//! `agent::storage_refusal`), and `limits.http_max_blocking_queries_per_client`:
//! one client may have only so many blocking queries (`?index=`) open at
//! once; one more is a 429.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use parking_lot::Mutex;

use crate::{Api, ApiError};

/// Blocking queries open per client IP.
#[derive(Default)]
pub(crate) struct Parked {
    open: Mutex<HashMap<IpAddr, u32>>,
}

pub(crate) struct Held<'a> {
    parked: &'a Parked,
    ip: IpAddr,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut open = self.parked.open.lock();
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl Parked {
    /// Blocking queries open now, over every client.
    pub(crate) fn total(&self) -> u32 {
        self.open.lock().values().sum()
    }

    fn hold(&self, ip: IpAddr, limit: u32) -> Option<Held<'_>> {
        let mut open = self.open.lock();
        let n = open.entry(ip).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(Held { parked: self, ip })
    }
}

/// Whether a request may block: `?index=` above 0.
fn blocks(req: &Request) -> bool {
    req.uri().query().is_some_and(|q| {
        q.contains("index=")
            && form_urlencoded::parse(q.as_bytes())
                .any(|(k, v)| k == "index" && v.parse::<u64>().is_ok_and(|i| i > 0))
    })
}

/// Let `req` in, or say why not. The returned hold (for a blocking query)
/// must live as long as the request.
pub(crate) fn admit<'a>(api: &'a Api, req: &Request) -> Result<Option<Held<'a>>, ApiError> {
    if let Some(refused) = crate::agent::storage_refusal(api, req.uri().path()) {
        return Err(refused);
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let (Some(ip), true) = (peer, blocks(req)) else {
        return Ok(None);
    };
    let limit = api.agent.max_blocking_queries_per_client();
    match api.parked.hold(ip, limit) {
        Some(held) => Ok(Some(held)),
        None => {
            tracing::debug!(%ip, "blocking query refused: limits.http_max_blocking_queries_per_client");
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Too many blocking queries open from your address (limits.http_max_blocking_queries_per_client = {limit})"
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_are_counted_per_client_and_released() {
        let parked = Parked::default();
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let first = parked.hold(a, 1).unwrap();
        assert!(parked.hold(a, 1).is_none());
        assert!(parked.hold("127.0.0.3".parse().unwrap(), 1).is_some());
        drop(first);
        assert!(parked.hold(a, 1).is_some());
        assert!(
            parked.open.lock().is_empty(),
            "released holds leave nothing behind"
        );
    }
}
