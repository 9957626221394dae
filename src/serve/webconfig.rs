//! exporter-toolkit's web configuration file (`listen.web_config_file`),
//! read as node_exporter reads it: TLS, basic auth users and response
//! headers; what Sonde cannot honour is refused, not ignored.

use std::collections::BTreeMap;
use std::path::Path;

use axum::http::{HeaderName, HeaderValue};
use serde::Deserialize;

use super::tls::{Pem, TlsFiles, Versions};

/// What Sonde takes from a web configuration file.
pub(super) struct Web {
    pub(super) tls: Option<TlsFiles>,
    pub(super) users: BTreeMap<String, String>,
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
}

/// exporter-toolkit's web configuration, field for field; unknown fields
/// are errors there too, so `promtool check web-config` and Sonde agree.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WebFile {
    tls_server_config: Option<TlsServerConfig>,
    http_server_config: Option<HttpServerConfig>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    rate_limit: Option<serde_yaml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TlsServerConfig {
    cert: Option<String>,
    cert_file: Option<String>,
    key: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<String>,
    client_ca: Option<String>,
    client_ca_file: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HttpServerConfig {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

pub(super) fn web_config(path: &Path) -> Result<Web, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file: WebFile = if text.trim().is_empty() {
        WebFile::default()
    } else {
        serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let at = |what: String| format!("{}: {what}", path.display());
    let mut ignored = Vec::new();
    if file.rate_limit.is_some() {
        ignored.push("rate_limit");
    }
    let tls = match file.tls_server_config {
        None => None,
        Some(t) => {
            let pem =
                |inline: Option<String>, file: Option<String>, what: &str| match (inline, file) {
                    (Some(_), Some(_)) => Err(at(format!(
                        "tls_server_config: set {what} or {what}_file, not both"
                    ))),
                    (Some(s), None) => Ok(Some(Pem::Inline(s))),
                    (None, Some(f)) => Ok(Some(Pem::File(dir.join(f), "web_config_file"))),
                    (None, None) => Ok(None),
                };
            let cert = pem(t.cert, t.cert_file, "cert")?;
            let key = pem(t.key, t.key_file, "key")?;
            let client_ca = pem(t.client_ca, t.client_ca_file, "client_ca")?;
            let (Some(cert), Some(key)) = (cert, key) else {
                return Err(at(
                    "tls_server_config needs cert_file (or cert) and key_file (or key)".into(),
                ));
            };
            let auth = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
            let client_optional = match (auth, client_ca.is_some()) {
                ("NoClientCert", false) => false,
                ("RequireAndVerifyClientCert", true) => false,
                ("VerifyClientCertIfGiven", true) => true,
                ("NoClientCert", true) => {
                    return Err(at("tls_server_config: client_ca_file is set but client_auth_type is NoClientCert; use RequireAndVerifyClientCert".into()))
                }
                ("RequireAndVerifyClientCert" | "VerifyClientCertIfGiven", false) => {
                    return Err(at(format!("tls_server_config: client_auth_type {auth} needs client_ca_file")))
                }
                (other, _) => {
                    return Err(at(format!("tls_server_config: client_auth_type {other} is not supported by Sonde; use NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert")))
                }
            };
            let version = |v: Option<&str>, key: &str| {
                match v {
                None => Ok(None),
                Some("TLS12") => Ok(Some(12)),
                Some("TLS13") => Ok(Some(13)),
                Some(other) => Err(at(format!("tls_server_config: {key} {other} is not supported by Sonde, which speaks TLS12 and TLS13"))),
            }
            };
            let min = version(t.min_version.as_deref(), "min_version")?;
            let max = version(t.max_version.as_deref(), "max_version")?;
            let versions = match (min, max) {
                (Some(13), _) => Versions::Only13,
                (_, Some(12)) => Versions::Only12,
                _ => Versions::Both,
            };
            if t.client_allowed_sans.is_some() {
                return Err(at("tls_server_config: client_allowed_sans is not supported by Sonde; give the clients a CA of their own".into()));
            }
            for (set, name) in [
                (t.cipher_suites.is_some(), "cipher_suites"),
                (
                    t.prefer_server_cipher_suites.is_some(),
                    "prefer_server_cipher_suites",
                ),
                (t.curve_preferences.is_some(), "curve_preferences"),
            ] {
                if set {
                    ignored.push(name);
                }
            }
            Some(TlsFiles {
                cert,
                key,
                client_ca,
                client_optional,
                versions,
            })
        }
    };
    let mut headers = Vec::new();
    if let Some(h) = file.http_server_config {
        if h.http2.is_some() {
            ignored.push("http_server_config.http2");
        }
        for (name, value) in h.headers.unwrap_or_default() {
            let n = HeaderName::try_from(name.as_str()).map_err(|_| {
                at(format!(
                    "http_server_config.headers: `{name}` is not a header name"
                ))
            })?;
            let v = HeaderValue::try_from(value.as_str()).map_err(|_| {
                at(format!(
                    "http_server_config.headers.{name}: not a valid header value"
                ))
            })?;
            headers.push((n, v));
        }
    }
    if !ignored.is_empty() {
        tracing::warn!(
            "{}: {} accepted but not applied (rustls chooses safe cipher suites and curves; Sonde serves HTTP/1.1; no rate limit)",
            path.display(),
            ignored.join(", ")
        );
    }
    Ok(Web {
        tls,
        users: file.basic_auth_users.unwrap_or_default(),
        headers,
    })
}
