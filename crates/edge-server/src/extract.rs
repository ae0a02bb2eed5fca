//! Request extractors whose rejections are JSON errors in edge's shape:
//! malformed bodies are 400 with serde's reason, oversize bodies 413, bodies
//! that are not JSON 415; malformed query strings and path parameters are
//! 400 naming the parameter. axum's own extractors answer `text/plain`, so
//! handlers take these instead.

use crate::Server;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use edge_api::ErrorBody;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use std::sync::Arc;
use std::time::Duration;

/// The project's error body with `status`.
pub(crate) fn error_response(status: StatusCode, error: String) -> Response {
    (status, axum::Json(ErrorBody { error })).into_response()
}

pub struct ApiJson<T>(pub T);

impl<T> FromRequest<Arc<Server>> for ApiJson<T>
where
    T: DeserializeOwned,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &Arc<Server>) -> Result<Self, Self::Rejection> {
        match axum::Json::<Object<T>>::from_request(req, state).await {
            Ok(axum::Json(Object(v))) => Ok(ApiJson(v)),
            Err(rej) => Err(reject(rej, state.cfg.listen.max_body_bytes)),
        }
    }
}

/// Every request body of the API is a JSON object. serde lets a struct be
/// written as an array of its fields too, so one whose fields all have
/// defaults would take `[]`; this reads only a map, in the same one pass.
struct Object<T>(T);

impl<'de, T: serde::Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
            .map(Object)
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
        StatusCode::UNSUPPORTED_MEDIA_TYPE => format!("unsupported media type: {text}"),
        _ => format!("invalid request body: {text}"),
    };
    error_response(status, error)
}

/// `axum::extract::Query`, answering a malformed query string with the
/// status axum picks (400) and its reason, which names the parameter.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(rej) => Err(error_response(rej.status(), rej.body_text())),
        }
    }
}

/// `axum::extract::Path`, answering a path parameter that cannot be read
/// (not UTF-8 once percent-decoded) with axum's status and reason.
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(rej) => Err(error_response(rej.status(), rej.body_text())),
        }
    }
}

/// `?index=N&wait=30s` of blocking queries.
#[derive(Debug, Default, Deserialize)]
pub struct Blocking {
    #[serde(default)]
    pub index: Option<u64>,
    /// Parsed while the query is read, so a bad `wait` is refused even when
    /// `index` does not block.
    #[serde(default, deserialize_with = "duration")]
    pub wait: Option<Duration>,
}

/// The longest a blocking query may hold a request.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

impl Blocking {
    pub fn wait(&self) -> Duration {
        self.wait
            .map_or(Duration::from_secs(30), |w| w.min(MAX_WAIT))
    }
}

/// A duration query parameter such as `30s` (or bare seconds).
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(text) => edge_spec::duration::parse(&text)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// A JSON answer stamped with the index it reflects.
pub(crate) fn json_at<T: serde::Serialize>(index: u64, body: &T) -> Response {
    let mut resp = axum::Json(body).into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&index.to_string()) {
        resp.headers_mut().insert(edge_api::INDEX_HEADER, v);
    }
    resp
}

/// Holds a read until the state passes `?index=` (or `?wait=` runs out).
pub(crate) async fn block(server: &Server, q: &Blocking) {
    if let Some(idx) = q.index.filter(|i| *i > 0) {
        server.store.wait_for(idx, q.wait()).await;
    }
}
