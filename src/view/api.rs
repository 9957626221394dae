//! The viewer's routes: the embedded page, and `/api/*` answering JSON
//! (gzip'd when the browser accepts it). Every response carries a CSP of
//! `default-src 'self'`: the page can load nothing from elsewhere. Bad
//! parameters are 400s and unknown names 404s whose message says what
//! exists; the page shows them.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, Request, State as AxState};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use serde::Serialize;

use super::compute;
use super::data::{Cols, MAX_COLUMNS};
use super::sections::{self, SECTIONS};
use super::{Data, State};
use crate::serve::{accepts_gzip, negotiated, Gzip};

type Shared = Arc<State>;

/// Nothing from elsewhere, no framing, no form posts.
pub const CSP: &str =
    "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
type Params = Query<HashMap<String, String>>;

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(asset))
        .route("/app.js", get(asset))
        .route("/app.css", get(asset))
        .route("/favicon.svg", get(asset))
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/info", get(info))
        .route("/api/section", get(section))
        .route("/api/query", get(query))
        .route("/api/range", get(range))
        .route("/api/save", get(save))
        .fallback(not_found)
        .layer(middleware::from_fn(headers))
        .with_state(state)
}

async fn headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

async fn asset(AxState(s): AxState<Shared>, uri: axum::http::Uri, h: HeaderMap) -> Response {
    match s.assets.get(uri.path()) {
        Some(a) if accepts_gzip(&h) => {
            negotiated(a.content_type, a.gzip.clone(), true, "accept-encoding")
        }
        Some(a) => negotiated(a.content_type, a.plain.clone(), false, "accept-encoding"),
        None => not_found(uri).await,
    }
}

async fn not_found(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/api/") {
        return error(
            StatusCode::NOT_FOUND,
            format!("no API {}: there are /api/info, /api/section, /api/query, /api/range and /api/save", uri.path()),
        );
    }
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>Not found</title><h1>Not found: {}</h1><p>The viewer is at <a href=\"/\">/</a>; its sections are {}.</p>",
        escape(uri.path()),
        sections::names()
    );
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn error(status: StatusCode, message: String) -> Response {
    #[derive(Serialize)]
    struct E {
        error: String,
    }
    let body = serde_json::to_vec(&E { error: message }).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn json<T: Serialize>(h: &HeaderMap, v: &T) -> Response {
    let body = match serde_json::to_vec(v) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    if accepts_gzip(h) && body.len() > 1024 {
        let mut out = Vec::new();
        Gzip::default().compress(&body, &mut out);
        negotiated(
            "application/json",
            Bytes::from(out),
            true,
            "accept-encoding",
        )
    } else {
        negotiated(
            "application/json",
            Bytes::from(body),
            false,
            "accept-encoding",
        )
    }
}

/// A refusal, turned into a JSON error response.
struct Fail(StatusCode, String);

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

fn bad(m: impl Into<String>) -> Fail {
    Fail(StatusCode::BAD_REQUEST, m.into())
}

fn number(q: &HashMap<String, String>, key: &str) -> Result<Option<f64>, Fail> {
    match q.get(key).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => match s.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Some(v)),
            _ => Err(bad(format!(
                "`{key}` must be a number of seconds from the start, not {s:?}"
            ))),
        },
    }
}

/// The range the page asked for (offsets, s), defaulting to all the data,
/// cut into its pixel width.
fn cols(s: &State, q: &HashMap<String, String>) -> Result<Cols, Fail> {
    let (first, last, interval) = s.with(None, |ctxs| {
        let mut first = f64::INFINITY;
        let mut last = f64::NEG_INFINITY;
        let mut interval = f64::INFINITY;
        for (_, c) in ctxs {
            let ts = c.src.timestamps();
            if let (Some(&a), Some(&b)) = (ts.first(), ts.last()) {
                first = first.min(c.offset(a));
                last = last.max(c.offset(b));
            }
            // The coarser source sets the columns: each has a row in each.
            interval = if interval.is_finite() {
                interval.max(c.interval())
            } else {
                c.interval()
            };
        }
        (first, last, interval)
    });
    if !first.is_finite() {
        return Err(Fail(StatusCode::SERVICE_UNAVAILABLE, "no data yet".into()));
    }
    let from = number(q, "from")?.unwrap_or(first);
    let to = number(q, "to")?.unwrap_or(last);
    if to < from {
        return Err(bad(format!("`to` ({to}) is before `from` ({from})")));
    }
    if to < first || from > last {
        return Err(bad(format!(
            "{from}..{to} is outside the data ({first}..{last} s from the start)"
        )));
    }
    let (from, to) = (from.max(first), to.min(last));
    let px = match q.get("px") {
        None => 1000,
        Some(p) => match p.parse::<usize>() {
            Ok(n) if n >= 1 => n.min(MAX_COLUMNS),
            _ => {
                return Err(bad(format!(
                    "`px` must be a positive whole number of pixels, not {p:?}"
                )))
            }
        },
    };
    Ok(Cols::new(from, to, px, interval))
}

fn find_section(q: &HashMap<String, String>) -> Result<&'static sections::Section, Fail> {
    let id = q.get("id").map(String::as_str).unwrap_or("");
    sections::find(id).ok_or_else(|| {
        Fail(
            StatusCode::NOT_FOUND,
            format!(
                "unknown section {id:?}: the sections are {}",
                sections::names()
            ),
        )
    })
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Fail> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

fn unreadable(e: anyhow::Error) -> Fail {
    Fail(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("cannot read the data: {e:#}"),
    )
}

async fn section(
    AxState(s): AxState<Shared>,
    Query(q): Params,
    h: HeaderMap,
) -> Result<Response, Fail> {
    let sec = find_section(&q)?;
    let cgroup = q.get("cgroup").cloned();
    // Everything under the sources' locks runs off the async workers.
    let a = blocking(move || {
        let cols = cols(&s, &q)?;
        s.with(cgroup.as_deref(), |ctxs| compute::section(sec, ctxs, &cols))
            .map_err(unreadable)
    })
    .await??;
    Ok(json(&h, &a))
}

async fn query(
    AxState(s): AxState<Shared>,
    Query(q): Params,
    h: HeaderMap,
) -> Result<Response, Fail> {
    let Some(expr) = q
        .get("expr")
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
    else {
        return Err(bad(
            "`expr` is empty: write a PromQL expression such as sum by (op) (rate(syscalls[1m]))",
        ));
    };
    let a = blocking(move || {
        let cols = cols(&s, &q)?;
        s.with(None, |ctxs| compute::query(&expr, ctxs, &cols))
            .map_err(|e| {
                let status = match e {
                    crate::query::QueryError::Source(_) => StatusCode::INTERNAL_SERVER_ERROR,
                    _ => StatusCode::BAD_REQUEST,
                };
                Fail(status, e.to_string())
            })
    })
    .await??;
    Ok(json(&h, &a))
}

async fn range(
    AxState(s): AxState<Shared>,
    Query(q): Params,
    h: HeaderMap,
) -> Result<Response, Fail> {
    let sec = find_section(&q)?;
    let (from, to) = match (number(&q, "from")?, number(&q, "to")?) {
        (Some(a), Some(b)) if b > a => (a, b),
        _ => return Err(bad("a range needs `from` < `to` (seconds from the start)")),
    };
    let cgroup = q.get("cgroup").cloned();
    let a = blocking(move || {
        s.with(cgroup.as_deref(), |ctxs| {
            compute::range(sec, ctxs, from, to)
        })
    })
    .await?
    .map_err(unreadable)?;
    Ok(json(&h, &a))
}

async fn save(AxState(s): AxState<Shared>) -> Result<Response, Fail> {
    let Some(live) = s.sources.iter().find_map(|o| match &o.data {
        Data::Live(l) => Some(Arc::clone(l)),
        Data::File(_) => None,
    }) else {
        return Err(Fail(
            StatusCode::NOT_FOUND,
            "only a live agent can be saved: this is a recording already".into(),
        ));
    };
    let bytes = blocking(move || live.save()).await?.map_err(|e| {
        Fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot save: {e:#}"),
        )
    })?;
    let name = format!(
        "attachment; filename=\"sonde-live-{}.parquet\"",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    );
    let mut resp = negotiated(
        "application/vnd.apache.parquet",
        Bytes::from(bytes),
        false,
        "accept-encoding",
    );
    if let Ok(v) = HeaderValue::from_str(&name) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

#[derive(Serialize)]
struct SourceInfo {
    label: &'static str,
    name: String,
    /// Unix seconds of offset 0.
    start: f64,
    first: f64,
    last: f64,
    interval: f64,
    rows: usize,
    series: usize,
    /// `[from, to]` offsets with no rows between (rows further apart than
    /// 2.5 intervals).
    gaps: Vec<[f64; 2]>,
    live: Option<super::live::Status>,
}

#[derive(Serialize)]
struct SectionInfo {
    id: &'static str,
    title: &'static str,
    cgroup: bool,
}

#[derive(Serialize)]
struct Info {
    mode: &'static str,
    version: &'static str,
    sources: Vec<SourceInfo>,
    sections: Vec<SectionInfo>,
    /// Cgroup ids, busiest (CPU over the data) first.
    cgroups: Vec<String>,
}

/// What `/api/info` says of a source that takes reading it all: computed
/// once for a recording, at each call for a live agent.
#[derive(Clone)]
pub struct Facts {
    gaps: Vec<[f64; 2]>,
    /// Cgroup ids with their CPU time over the data.
    cgroups: Vec<(String, f64)>,
}

fn facts(c: &super::data::Ctx<'_>) -> Facts {
    let ts = c.src.timestamps();
    let gap = c.gap() * 1e9;
    let gaps = ts
        .windows(2)
        .filter(|w| (w[1] - w[0]) as f64 > gap)
        .take(1000)
        .map(|w| [c.offset(w[0]), c.offset(w[1])])
        .collect();
    let mut cgroups: Vec<(String, f64)> = Vec::new();
    for (i, s) in c.src.series().iter().enumerate() {
        if !(s.metric.starts_with("container_") || s.metric.starts_with("cgroup_")) {
            continue;
        }
        let Some((_, id)) = s.labels.iter().find(|(k, _)| k == "id") else {
            continue;
        };
        // CPU used: the counter's last value less its first (its last
        // alone when it went down: the cgroup was made again).
        let used = if s.metric == "container_cpu_usage" {
            let v = c.src.scalars(i, 0..ts.len()).unwrap_or_default();
            let mut seen = v.iter().flatten();
            match (seen.next(), v.iter().flatten().next_back()) {
                (Some(a), Some(b)) if b >= a => b - a,
                (_, Some(b)) => *b,
                _ => 0.0,
            }
        } else {
            0.0
        };
        match cgroups.iter_mut().find(|(k, _)| k == id) {
            Some(e) => e.1 += used,
            None => cgroups.push((id.clone(), used)),
        }
    }
    Facts { gaps, cgroups }
}

async fn info(AxState(s): AxState<Shared>, h: HeaderMap) -> Result<Response, Fail> {
    let r = blocking(move || {
        let live = s.sources.iter().any(|o| matches!(o.data, Data::Live(_)));
        let mode = if live {
            "live"
        } else if s.sources.len() == 2 {
            "ab"
        } else {
            "file"
        };
        let mut cpu: HashMap<String, f64> = HashMap::new();
        let mut sources: Vec<SourceInfo> = s.with(None, |ctxs| {
            ctxs.iter()
                .zip(&s.sources)
                .map(|((label, c), o)| {
                    let f = match &o.data {
                        Data::File(_) => o.facts.get_or_init(|| facts(c)).clone(),
                        Data::Live(_) => facts(c),
                    };
                    for (id, used) in f.cgroups {
                        *cpu.entry(id).or_default() += used;
                    }
                    let ts = c.src.timestamps();
                    SourceInfo {
                        label,
                        name: o.name.clone(),
                        start: o.base as f64 / 1e9,
                        first: ts.first().map_or(0.0, |&t| c.offset(t)),
                        last: ts.last().map_or(0.0, |&t| c.offset(t)),
                        interval: c.interval(),
                        rows: ts.len(),
                        series: c.src.series().len(),
                        gaps: f.gaps,
                        live: None,
                    }
                })
                .collect()
        });
        // The status lock is taken with no memory lock held.
        for (info, o) in sources.iter_mut().zip(&s.sources) {
            if let Data::Live(l) = &o.data {
                info.live = Some(l.status());
            }
        }
        let mut cg: Vec<(String, f64)> = cpu.into_iter().collect();
        cg.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Info {
            mode,
            version: env!("CARGO_PKG_VERSION"),
            sources,
            sections: SECTIONS
                .iter()
                .map(|x| SectionInfo {
                    id: x.id,
                    title: x.title,
                    cgroup: x.cgroup,
                })
                .collect(),
            cgroups: cg.into_iter().map(|c| c.0).collect(),
        }
    })
    .await?;
    Ok(json(&h, &r))
}
