//! `?dc=`: there is one datacenter today. A request for another one is
//! refused as Consul refuses a datacenter it has no path to, instead of
//! being answered silently from this one.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::Api;

pub(crate) async fn only_local(State(api): State<Api>, req: Request, next: Next) -> Response {
    let asked = req.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "dc")
            .map(|(_, v)| v.into_owned())
    });
    match asked {
        Some(dc) if !dc.is_empty() && dc != api.agent.datacenter() => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "No path to datacenter {dc:?}: this cluster is datacenter {:?}, and WAN federation is not supported yet\n",
                api.agent.datacenter()
            ),
        )
            .into_response(),
        _ => next.run(req).await,
    }
}
