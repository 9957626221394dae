//! Fetching a snapshot: GET `<agent>/metrics/binary` with a deadline, a
//! body cap and a content-type check, failures typed by reason. Every
//! client of an agent (exporter, pusher, recorder, hindsight) uses this.

use std::time::Duration;

use super::Snapshot;
use crate::client::{describe, Upstream};

/// Largest snapshot body accepted. Ours is ~50 KB; a Rezolus agent on a
/// large host is a few MB. A body over this is an error, never buffered.
pub const MAX_BODY: usize = 32 << 20;

/// Why a pull failed; the `reason` label of the error counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Connect,
    Timeout,
    Status,
    ContentType,
    TooLarge,
    Decode,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Timeout => "timeout",
            Failure::Status => "status",
            Failure::ContentType => "content_type",
            Failure::TooLarge => "too_large",
            Failure::Decode => "decode",
        }
    }

    pub const ALL: [Failure; 6] = [
        Failure::Connect,
        Failure::Timeout,
        Failure::Status,
        Failure::ContentType,
        Failure::TooLarge,
        Failure::Decode,
    ];
}

#[derive(Debug)]
pub struct FetchError {
    pub failure: Failure,
    pub detail: String,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

pub fn fail(failure: Failure, detail: impl Into<String>) -> FetchError {
    FetchError {
        failure,
        detail: detail.into(),
    }
}

/// `<base>/metrics/binary`.
pub fn binary_url(base: &str) -> String {
    format!("{}/metrics/binary", base.trim_end_matches('/'))
}

/// Fetches and decodes a snapshot; returns it with its bytes (which the
/// pusher spools as they came).
pub async fn snapshot(
    client: &reqwest::Client,
    url: &str,
    upstream: &Upstream,
    timeout: Duration,
) -> Result<(Snapshot, Vec<u8>), FetchError> {
    let body = fetch(client, url, upstream, timeout).await?;
    match super::decode(&body) {
        Ok(s) => Ok((s, body)),
        Err(e) => Err(fail(Failure::Decode, e.to_string())),
    }
}

/// GETs `url` and returns its msgpack body, within `timeout` overall.
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    upstream: &Upstream,
    timeout: Duration,
) -> Result<Vec<u8>, FetchError> {
    match tokio::time::timeout(timeout, fetch_inner(client, url, upstream)).await {
        Ok(r) => r,
        Err(_) => Err(fail(
            Failure::Timeout,
            format!("no complete answer within {timeout:?}"),
        )),
    }
}

async fn fetch_inner(
    client: &reqwest::Client,
    url: &str,
    upstream: &Upstream,
) -> Result<Vec<u8>, FetchError> {
    let req = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/msgpack");
    let mut resp = upstream
        .authorize(req)
        .map_err(|e| fail(Failure::Connect, e))?
        .send()
        .await
        .map_err(|e| fail(Failure::Connect, describe(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(fail(Failure::Status, format!("HTTP status {status}")));
    }
    if let Some(ct) = resp.headers().get(reqwest::header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !matches!(
            essence,
            "application/msgpack" | "application/x-msgpack" | "application/octet-stream" | ""
        ) {
            return Err(fail(
                Failure::ContentType,
                format!("content type `{ct}` is not msgpack (is the URL an agent?)"),
            ));
        }
    }
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(fail(
            Failure::TooLarge,
            format!(
                "body of {} bytes is over the {MAX_BODY}-byte cap",
                resp.content_length().unwrap_or(0)
            ),
        ));
    }
    let mut body = Vec::with_capacity(resp.content_length().unwrap_or(0) as usize);
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| fail(Failure::Connect, describe(&e)))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(fail(
                Failure::TooLarge,
                format!("body is over the {MAX_BODY}-byte cap"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// GETs `<base><path>` as text if the agent has it (Rezolus and Sonde
/// agents serve `/metrics/descriptions` and `/systeminfo`; others may not).
pub async fn optional_json(client: &reqwest::Client, base: &str, path: &str) -> Option<String> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let resp = tokio::time::timeout(Duration::from_secs(5), client.get(&url).send())
        .await
        .ok()?
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let text = resp.text().await.ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?;
    Some(text)
}
