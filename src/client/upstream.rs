//! How Sonde authenticates to a server it pulls from or pushes to: a CA to
//! trust, a client certificate, a bearer token or basic auth — the keys
//! `tls_ca_file`, `tls_cert_file`, `tls_key_file`, `bearer_token_file` and
//! `basic_auth` of the pusher's sinks and of every puller's sources.

use std::path::PathBuf;
use std::time::SystemTime;

use reqwest::header::{self, HeaderValue};
use serde::Deserialize;

use crate::config::{Checker, Segment};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub password: Option<String>,
    /// Read at every request, so a rotated password needs no reload.
    pub password_file: Option<PathBuf>,
}

/// The five keys, as a config section gives them.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Upstream {
    pub tls_ca_file: Option<PathBuf>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub bearer_token_file: Option<PathBuf>,
    pub basic_auth: Option<BasicAuth>,
}

/// The keys [`Upstream`] reads.
const KEYS: [&str; 5] = [
    "tls_ca_file",
    "tls_cert_file",
    "tls_key_file",
    "bearer_token_file",
    "basic_auth",
];

/// Takes the upstream keys out of the config table `section` (found at
/// `path`) and checks them, so the section's own struct keeps denying
/// unknown keys without listing these.
pub(super) fn take(
    c: &mut Checker<'_>,
    path: &[Segment],
    section: Option<&mut toml::Value>,
) -> Upstream {
    let Some(toml::Value::Table(table)) = section else {
        return Upstream::default();
    };
    let mut keys = toml::Table::new();
    for k in KEYS {
        if let Some(v) = table.remove(k) {
            keys.insert(k.to_string(), v);
        }
    }
    if keys.is_empty() {
        return Upstream::default();
    }
    let upstream: Upstream = c
        .deserialize(path, toml::Value::Table(keys))
        .unwrap_or_default();
    for (key, message) in upstream.check() {
        let mut at = path.to_vec();
        at.push(Segment::Key(key.into()));
        c.problem(&at, message);
    }
    upstream
}

impl Upstream {
    /// Every problem, as (key, message), for the config checker.
    pub fn check(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            problems.push((
                "tls_cert_file",
                "tls_cert_file and tls_key_file go together: set both for a client certificate"
                    .to_string(),
            ));
        } else if let Err(e) = self.client() {
            let key = if e.starts_with("tls_ca_file") {
                "tls_ca_file"
            } else {
                "tls_cert_file"
            };
            problems.push((key, e));
        }
        if let Some(p) = &self.bearer_token_file {
            if let Err(e) = std::fs::metadata(p) {
                problems.push((
                    "bearer_token_file",
                    format!("cannot read {}: {e}", p.display()),
                ));
            }
        }
        if let Some(b) = &self.basic_auth {
            if b.password.is_some() == b.password_file.is_some() {
                problems.push(("basic_auth", "set one of password and password_file".into()));
            }
            if self.bearer_token_file.is_some() {
                problems.push((
                    "basic_auth",
                    "set basic_auth or bearer_token_file, not both".into(),
                ));
            }
            if let Some(p) = &b.password_file {
                if let Err(e) = std::fs::metadata(p) {
                    problems.push((
                        "basic_auth",
                        format!("cannot read password_file {}: {e}", p.display()),
                    ));
                }
            }
        }
        problems
    }

    /// A client of its own when a CA or a client certificate is set (the
    /// CA is trusted besides the webpki roots); `None` means the shared one.
    pub fn client(&self) -> Result<Option<reqwest::Client>, String> {
        if self.tls_ca_file.is_none() && self.tls_cert_file.is_none() {
            return Ok(None);
        }
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("sonde/", env!("CARGO_PKG_VERSION")))
            .use_rustls_tls();
        if let Some(ca) = &self.tls_ca_file {
            let pem =
                std::fs::read(ca).map_err(|e| format!("tls_ca_file {}: {e}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("tls_ca_file {}: not PEM certificates: {e}", ca.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "tls_ca_file {}: no certificate in it",
                    ca.display()
                ));
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_key_file) {
            let mut pem = std::fs::read(cert)
                .map_err(|e| format!("tls_cert_file {}: {e}", cert.display()))?;
            pem.push(b'\n');
            pem.extend(
                std::fs::read(key).map_err(|e| format!("tls_key_file {}: {e}", key.display()))?,
            );
            let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                format!(
                    "tls_cert_file {} with tls_key_file {}: {e}",
                    cert.display(),
                    key.display()
                )
            })?;
            b = b.identity(id);
        }
        b.build()
            .map(Some)
            .map_err(|e| format!("tls_cert_file: {e}"))
    }

    /// The TLS files, whose changes rebuild the client.
    pub fn tls_files(&self) -> Vec<PathBuf> {
        [&self.tls_ca_file, &self.tls_cert_file, &self.tls_key_file]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// Adds the credentials to a request; token and password files are
    /// read here, per request, so rotating them needs no reload.
    pub fn authorize(
        &self,
        mut req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, String> {
        if let Some(b) = &self.basic_auth {
            let password = match (&b.password, &b.password_file) {
                (Some(p), _) => p.clone(),
                (None, Some(path)) => std::fs::read_to_string(path)
                    .map_err(|e| {
                        format!(
                            "cannot read basic_auth password_file {}: {e}",
                            path.display()
                        )
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
                (None, None) => String::new(),
            };
            req = req.basic_auth(&b.username, Some(password));
        }
        if let Some(path) = &self.bearer_token_file {
            let t = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read bearer_token_file {}: {e}", path.display()))?;
            let v = HeaderValue::from_str(&format!("Bearer {}", t.trim()))
                .map_err(|_| format!("{} holds characters a header cannot", path.display()))?;
            req = req.header(header::AUTHORIZATION, v);
        }
        Ok(req)
    }
}

/// A client that follows its TLS files: rebuilt when they change (a
/// rotated client certificate needs no reload); a broken new file keeps
/// the running client, logged once.
pub struct Client {
    upstream: Upstream,
    shared: reqwest::Client,
    own: Option<(Vec<Option<SystemTime>>, reqwest::Client)>,
}

fn stamps(files: &[PathBuf]) -> Vec<Option<SystemTime>> {
    files
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

impl Client {
    /// `shared` serves when `upstream` needs no client of its own. A file
    /// broken since the config was checked leaves the shared client, and
    /// the requests say why they fail.
    pub fn new(upstream: Upstream, shared: reqwest::Client) -> Client {
        let own = match upstream.client() {
            Ok(Some(c)) => Some((stamps(&upstream.tls_files()), c)),
            Ok(None) | Err(_) => None,
        };
        Client {
            upstream,
            shared,
            own,
        }
    }

    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// The client to use now (cheap to clone).
    pub fn current(&mut self, name: &str) -> reqwest::Client {
        if let Some((stamped, client)) = &mut self.own {
            let now = stamps(&self.upstream.tls_files());
            if now != *stamped {
                *stamped = now;
                match self.upstream.client() {
                    Ok(Some(c)) => {
                        tracing::info!(upstream = name, "reloaded the TLS files");
                        *client = c;
                    }
                    Ok(None) => {}
                    Err(e) => tracing::error!(
                        upstream = name,
                        "changed TLS files are not usable, keeping the running ones: {e}"
                    ),
                }
            }
            return client.clone();
        }
        self.shared.clone()
    }
}
