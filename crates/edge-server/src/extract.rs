//! Request extractors whose rejections are JSON errors in edge's shape:
//! malformed bodies are 400 with serde's reason, oversize bodies 413.

use crate::Server;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use edge_api::ErrorBody;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;

pub struct ApiJson<T>(pub T);

impl<T> FromRequest<Arc<Server>> for ApiJson<T>
where
    T: DeserializeOwned,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &Arc<Server>) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rej) => Err(reject(rej, state.cfg.max_body_bytes)),
        }
    }
}

fn reject(rej: JsonRejection, limit: usize) -> Response {
    let text = rej.body_text();
    let status = if text.contains("length limit exceeded") {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        match rej.status() {
            StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        }
    };
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => format!(
            "request body too large: the limit is {limit} bytes (server setting max_body_bytes)"
        ),
        _ => format!("invalid request body: {text}"),
    };
    (status, axum::Json(ErrorBody { error })).into_response()
}

/// `?index=N&wait=30s` of blocking queries.
#[derive(Debug, Default, Deserialize)]
pub struct Blocking {
    #[serde(default)]
    pub index: Option<u64>,
    #[serde(default)]
    pub wait: Option<String>,
}

/// The longest a blocking query may hold a request.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

impl Blocking {
    pub fn wait(&self) -> Result<Duration, crate::ServerError> {
        match &self.wait {
            None => Ok(Duration::from_secs(30)),
            Some(w) => edge_spec::duration::parse(w)
                .map(|d| d.min(MAX_WAIT))
                .map_err(|e| crate::ServerError::BadRequest(format!("wait: {e}"))),
        }
    }
}
