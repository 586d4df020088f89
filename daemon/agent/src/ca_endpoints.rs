//! `/v1/connect/ca/*` and `/v1/agent/connect/ca/*`: roots, configuration,
//! rotation status and leaf certificates. Client agents forward these to a
//! server (they hold no CA state).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use mesh_api::{Api, ApiError, Params, QueryOptions};
use mesh_ca::{rfc3339, Stage};
use mesh_state::Table;
use serde_json::{json, Value};

use crate::connect_ca::{CaRequestError, StoredCa};
use crate::node::Node;

type A = Extension<Arc<Node>>;

/// The CA routes (mounted where client agents forward them).
pub(crate) fn routes(agent: Arc<Node>) -> Router<Api> {
    Router::new()
        .route("/v1/connect/ca/roots", get(roots))
        .route("/v1/agent/connect/ca/roots", get(roots))
        .route(
            "/v1/connect/ca/configuration",
            get(get_config).put(put_config),
        )
        .route("/v1/connect/ca/rotation", get(rotation))
        .route("/v1/connect/ca/rotation/retire", post(retire))
        .route("/v1/agent/connect/ca/leaf/{service}", get(leaf))
        .layer(Extension(agent))
}

fn api_error(e: CaRequestError) -> ApiError {
    match e {
        CaRequestError::Bad(m) => ApiError::bad_request(m),
        CaRequestError::Unavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m),
        CaRequestError::RateLimited(m) => ApiError::new(StatusCode::TOO_MANY_REQUESTS, m),
    }
}

fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Pending => "pending",
        Stage::Active => "active",
        Stage::Retired => "retired",
    }
}

fn roots_json(stored: &StoredCa, index: u64) -> Value {
    let s = &stored.state;
    let roots: Vec<Value> = s
        .roots
        .iter()
        .map(|r| {
            let root = &r.root;
            json!({
                "ID": root.id,
                "Name": root.name,
                "SerialNumber": root.serial_number,
                "SigningKeyID": root.signing_key_id,
                "NotBefore": rfc3339(root.not_before),
                "NotAfter": rfc3339(root.not_after),
                "RootCert": root.root_cert,
                "IntermediateCerts": root.chain_pems(),
                "Active": r.stage == Stage::Active,
                "Stage": stage_name(r.stage),
                "PrivateKeyType": root.key_type.consul_type(),
                "PrivateKeyBits": root.key_type.bits(),
                "CreateIndex": index,
                "ModifyIndex": index,
            })
        })
        .collect();
    json!({
        "ActiveRootID": s.active().map(|r| r.id.clone()).unwrap_or_default(),
        "TrustDomain": s.trust_domain,
        "Roots": roots,
    })
}

async fn roots(Extension(agent): A, params: Params) -> Result<Response, ApiError> {
    let opts = QueryOptions::parse(&params.map())?;
    // Wait (blocking query) on the CA table, then render from the stored state.
    wait_for_ca(&agent).await;
    let index = wait_ca(&agent, &opts).await;
    let Some((stored, ca_index)) = agent.ca.stored_ca() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the Connect CA is not initialised yet (is connect enabled?)",
        ));
    };
    let headers = [
        ("X-Consul-Index", index.max(ca_index).to_string()),
        ("X-Consul-KnownLeader", "true".to_string()),
    ];
    if params.has("pem") {
        let pem = stored.state.trust_bundle().join("");
        return Ok((
            headers,
            [(header::CONTENT_TYPE, "application/pem-certificate-chain")],
            pem,
        )
            .into_response());
    }
    Ok((headers, Json(roots_json(&stored, ca_index))).into_response())
}

/// Block until the CA table passes `opts.index` or the wait ends; the index now.
async fn wait_ca(agent: &Node, opts: &QueryOptions) -> u64 {
    let mut rx = agent.state.hub().subscribe(Table::Ca);
    let current = || agent.state.read(|s| s.table_index(Table::Ca));
    if opts.index > 0 {
        let min = opts.index;
        let _ = tokio::time::timeout(opts.wait, rx.wait_for(|_| current() > min)).await;
    }
    current()
}

/// A fresh cluster creates its CA moments after electing a leader: give
/// sidecars that start with it a short wait instead of an error.
async fn wait_for_ca(agent: &Node) {
    let mut rx = agent.state.hub().subscribe(Table::Ca);
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        rx.wait_for(|_| agent.ca.stored_ca().is_some()),
    )
    .await;
}

async fn get_config(Extension(agent): A) -> Result<Json<Value>, ApiError> {
    wait_for_ca(&agent).await;
    let (stored, index) = agent.ca.stored_ca().ok_or_else(|| {
        api_error(CaRequestError::Unavailable(
            "the Connect CA is not initialised yet".into(),
        ))
    })?;
    let mut v = stored.config.clone();
    if let Some(m) = v.as_object_mut() {
        if mesh_wire::field(m, "Provider").is_none() {
            m.insert("Provider".into(), "consul".into());
        }
        m.insert(
            "RotationPendingPeriod".into(),
            format!("{}s", stored.pending_secs).into(),
        );
        m.insert(
            "RotationSpreadWindow".into(),
            format!("{}s", stored.spread_secs).into(),
        );
        m.insert("CreateIndex".into(), index.into());
        m.insert("ModifyIndex".into(), index.into());
    }
    Ok(Json(v))
}

async fn put_config(Extension(agent): A, body: Bytes) -> Result<Json<Value>, ApiError> {
    let v: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("Request decode failed: CA configuration: {e}"))
    })?;
    // A configuration sent right after the cluster formed (terraform often
    // does) waits for the leader to create the CA instead of failing.
    wait_for_ca(&agent).await;
    let rotating = agent.ca.set_ca_config(&v).await.map_err(api_error)?;
    Ok(Json(json!({ "Rotating": rotating })))
}

async fn rotation(Extension(agent): A, params: Params) -> Result<Response, ApiError> {
    let opts = QueryOptions::parse(&params.map())?;
    wait_for_ca(&agent).await;
    let index = wait_ca(&agent, &opts).await;
    let Some((stored, _)) = agent.ca.stored_ca() else {
        return Err(api_error(CaRequestError::Unavailable(
            "the Connect CA is not initialised yet".into(),
        )));
    };
    let s = &stored.state;
    let (reissued, total) = s.progress();
    let body = match &s.rotation {
        None => json!({
            "Stage": "none",
            "ActiveRootID": s.active().map(|r| r.id.clone()).unwrap_or_default(),
        }),
        Some(r) => {
            let retire_at = s
                .roots
                .iter()
                .find(|x| x.root.id == r.old_root_id)
                .and_then(|x| x.remove_at);
            let stage = if r.activated_at.is_none() {
                "pending"
            } else if reissued < total {
                "reissuing"
            } else {
                "active"
            };
            json!({
                "Stage": stage,
                "NewRootID": r.new_root_id,
                "OldRootID": r.old_root_id,
                "StartedAt": rfc3339(r.started_at),
                "ActivatedAt": r.activated_at.map(rfc3339),
                "OldRootRetiresAt": retire_at.map(rfc3339),
                "SpreadWindow": format!("{}s", r.spread_window_secs),
                "Reissued": reissued,
                "Total": total,
                "ActiveRootID": s.active().map(|r| r.id.clone()).unwrap_or_default(),
            })
        }
    };
    Ok(([("X-Consul-Index", index.to_string())], Json(body)).into_response())
}

async fn retire(Extension(agent): A) -> Result<Json<Value>, ApiError> {
    let gone = agent.ca.retire_now().await.map_err(api_error)?;
    Ok(Json(json!({ "Retired": gone })))
}

async fn leaf(
    Extension(agent): A,
    Path(service): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let opts = QueryOptions::parse(&params.map())?;
    wait_for_ca(&agent).await;
    let mut cached = agent.ca.leaf_for(&service).await.map_err(api_error)?;
    // Blocking: hold the answer until this leaf is replaced (renewal, or a
    // re-issue after the root changes) or the wait ends.
    if opts.index > 0 && opts.index >= cached.index {
        let min = opts.index;
        let deadline = tokio::time::Instant::now() + opts.wait;
        let mut ca = agent.state.hub().subscribe(Table::Ca);
        while cached.index <= min {
            let until = agent.ca.leaf_changes_at(&cached);
            let secs = (until - mesh_ca::unix_now()).clamp(0, 3600) as u64;
            let wake = (tokio::time::Instant::now() + Duration::from_secs(secs)).min(deadline);
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = ca.changed() => {}
            }
            cached = agent.ca.leaf_for(&service).await.map_err(api_error)?;
            if tokio::time::Instant::now() >= deadline {
                break;
            }
        }
    }
    let l = &cached.leaf;
    let body = json!({
        "SerialNumber": l.serial,
        "CertPEM": std::iter::once(l.cert_pem.clone()).chain(cached.chain.iter().cloned()).collect::<Vec<_>>().join(""),
        "PrivateKeyPEM": l.private_key_pem.as_ref().map(|k| k.expose().to_string()),
        "Service": l.service,
        "ServiceURI": l.spiffe_id,
        "ValidAfter": rfc3339(l.valid_after),
        "ValidBefore": rfc3339(l.valid_before),
        "RootID": l.root_id,
        "CreateIndex": cached.index,
        "ModifyIndex": cached.index,
    });
    Ok(([("X-Consul-Index", cached.index.to_string())], Json(body)).into_response())
}
