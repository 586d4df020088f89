use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error answered to an HTTP client: a status code and a plain-text
/// message, as Consul answers.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    /// 400 with what is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// Any status with a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl ApiError {
    /// A failed transaction: 409 with Consul's `{Results, Errors}` body.
    pub fn txn(errors: Vec<(usize, String)>) -> Self {
        let body = serde_json::json!({
            "Results": null,
            "Errors": errors.iter().map(|(i, what)| serde_json::json!({"OpIndex": i, "What": what})).collect::<Vec<_>>(),
        });
        ApiError {
            status: StatusCode::CONFLICT,
            message: body.to_string(),
        }
    }
}

impl From<mesh_wire::WireError> for ApiError {
    fn from(e: mesh_wire::WireError) -> Self {
        ApiError::bad_request(e.message)
    }
}

impl From<mesh_raft::ProposeError> for ApiError {
    fn from(e: mesh_raft::ProposeError) -> Self {
        let status = match e {
            mesh_raft::ProposeError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<mesh_raft::ReadError> for ApiError {
    fn from(e: mesh_raft::ReadError) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

/// A JSON request body; an empty one reads as `{}`. A parse error is a 400
/// naming `what` was being decoded.
pub(crate) fn json_body(body: &[u8], what: &str) -> Result<serde_json::Value, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(serde_json::json!({}));
    }
    Ok(crate::wire::decode_json(body, what)?)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, format!("{}\n", self.message)).into_response()
    }
}
