//! The agent's HTTP endpoints.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;

use super::collector::{Body, Collector};
use crate::exposition::prometheus::Format;

pub fn router(collector: Arc<Collector>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/metrics/binary", get(binary))
        .route("/metrics/json", get(json))
        .route("/samplers", get(samplers))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: try /metrics, /metrics/binary, /metrics/json, /samplers or /healthz\n",
            )
        })
        .with_state(collector)
}

pub(crate) fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|enc| {
            let mut parts = enc.split(';');
            let name = parts.next().unwrap_or("").trim();
            // `gzip;q=0` explicitly refuses it.
            let refused = parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

async fn metrics(State(c): State<Arc<Collector>>, headers: HeaderMap) -> Response {
    let format = Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let gzip = accepts_gzip(&headers);
    let body = c.body(Body::Prometheus(format, gzip)).await;
    let mut resp = bytes_response(format.content_type(), body);
    if gzip {
        resp.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    resp.headers_mut().insert(
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    resp
}

async fn binary(State(c): State<Arc<Collector>>) -> Response {
    bytes_response("application/msgpack", c.body(Body::Msgpack).await)
}

async fn json(State(c): State<Arc<Collector>>) -> Response {
    bytes_response("application/json", c.body(Body::Json).await)
}

async fn samplers(State(c): State<Arc<Collector>>) -> Response {
    let body = serde_json::to_vec_pretty(&c.reports()).unwrap_or_default();
    bytes_response("application/json", Bytes::from(body))
}

fn bytes_response(content_type: &'static str, body: Bytes) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}
