//! The HTTP client side, one home (the server side is `serve`): the shared
//! keep-alive client, TLS and credentials toward a server Sonde pulls from
//! or pushes to ([`Upstream`]), and the one config type of an agent that a
//! mode pulls snapshots from ([`PullSource`]).

mod source;
mod upstream;

use std::time::Duration;

pub use source::{PullSource, SourceKeys};
pub use upstream::{BasicAuth, Client, Upstream};

/// One HTTP client per process: keep-alive connections to the agents.
pub fn shared() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("sonde/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .expect("a client without TLS roots or proxies to load cannot fail")
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
