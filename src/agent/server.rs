//! The agent's HTTP endpoints.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;

use super::collector::{Body, Collector};
use crate::prometheus::Format;
use crate::serve::{accepts_gzip, bytes_response, negotiated, with_base_routes};

pub fn router(collector: Arc<Collector>) -> Router {
    let routes = Router::new()
        .route("/metrics", get(metrics))
        .route("/metrics/binary", get(binary))
        .route("/metrics/json", get(json))
        .route("/metrics/descriptions", get(descriptions))
        .route("/systeminfo", get(systeminfo))
        .route("/samplers", get(samplers))
        .route("/top", get(top));
    with_base_routes(
        routes,
        "/metrics, /metrics/binary, /metrics/json, /metrics/descriptions, /systeminfo, /samplers, /top",
    )
    .with_state(collector)
}

async fn metrics(State(c): State<Arc<Collector>>, headers: HeaderMap) -> Response {
    let format = Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let gzip = accepts_gzip(&headers);
    let body = c.body(Body::Prometheus(format, gzip)).await;
    negotiated(format.content_type(), body, gzip, "Accept, Accept-Encoding")
}

async fn binary(State(c): State<Arc<Collector>>) -> Response {
    bytes_response("application/msgpack", c.body(Body::Msgpack).await)
}

async fn json(State(c): State<Arc<Collector>>) -> Response {
    bytes_response("application/json", c.body(Body::Json).await)
}

async fn samplers(State(c): State<Arc<Collector>>) -> Response {
    let body = serde_json::to_vec_pretty(&c.samplers.reports()).unwrap_or_default();
    bytes_response("application/json", Bytes::from(body))
}

async fn descriptions() -> Response {
    let body = serde_json::to_vec(&super::systeminfo::descriptions()).unwrap_or_default();
    bytes_response("application/json", Bytes::from(body))
}

async fn systeminfo() -> Response {
    let info = tokio::task::spawn_blocking(super::systeminfo::collect)
        .await
        .unwrap_or_default();
    let body = serde_json::to_vec(&info).unwrap_or_default();
    bytes_response("application/json", Bytes::from(body))
}

/// The processes sampler's latest table (top processes by CPU and by
/// resident memory), or 404 with `{"error": …}` when it is not running.
async fn top() -> Response {
    match crate::samplers::processes::top_json() {
        Ok(body) => bytes_response("application/json", body),
        Err(why) => {
            let body = serde_json::json!({ "error": why }).to_string();
            let mut resp = bytes_response("application/json", Bytes::from(body));
            *resp.status_mut() = StatusCode::NOT_FOUND;
            resp
        }
    }
}
