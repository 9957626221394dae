//! Fetching a snapshot over HTTP with a deadline and a body cap; shared by
//! the relay exporter and the pusher.

use std::time::Duration;

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
pub struct PullError {
    pub failure: Failure,
    pub detail: String,
}

impl std::fmt::Display for PullError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

fn fail(failure: Failure, detail: impl Into<String>) -> PullError {
    PullError {
        failure,
        detail: detail.into(),
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("sonde/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .expect("a client without TLS roots or proxies to load cannot fail")
}

/// GETs `url` and returns its msgpack body, within `timeout` overall.
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> Result<Vec<u8>, PullError> {
    match tokio::time::timeout(timeout, fetch_inner(client, url)).await {
        Ok(r) => r,
        Err(_) => Err(fail(
            Failure::Timeout,
            format!("no complete answer within {timeout:?}"),
        )),
    }
}

async fn fetch_inner(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, PullError> {
    let mut resp = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/msgpack")
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

/// The innermost cause: reqwest's top-level message is only "error sending
/// request for url".
pub fn describe(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg = s.to_string();
        source = s.source();
    }
    msg
}
