//! Who may talk to an endpoint: TLS (and mutual TLS), basic auth with
//! bcrypt hashes, a bearer token, client networks, and extra response
//! headers — from the `[listen]` keys or from an exporter-toolkit web
//! configuration file. Built whole from the files and swapped whole on a
//! reload or when a file changes, so a request sees one consistent set.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use crate::config::{Cidr, Listen};

/// A problem with one `[listen]` key: the key and what is wrong.
pub type KeyProblem = (&'static str, String);

/// The security settings of one listener, loaded from its files.
pub struct Security {
    tls: Option<Arc<rustls::ServerConfig>>,
    users: BTreeMap<String, String>,
    bearer: Option<Vec<u8>>,
    allow: Vec<Cidr>,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Every file read (web config's certificates included), for the
    /// change watcher.
    files: Vec<PathBuf>,
    /// A hash at the users' highest cost, checked for unknown names so
    /// their timing matches a known name's.
    dummy: String,
    /// SHA-256 of `Authorization` values that verified, so a scraper pays
    /// bcrypt once per credential, not once per scrape. Cleared with the
    /// settings on reload.
    verified: Mutex<HashSet<[u8; 32]>>,
}

/// Missing or wrong credentials (answered 401).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Denied;

/// At most this many verified credentials are remembered.
const VERIFIED_MAX: usize = 1024;

/// Verifying a bcrypt hash costs ~50 ms of CPU at cost 10: at most two at a
/// time, so a flood of wrong passwords cannot starve `/metrics` of CPU.
static BCRYPT: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

impl Security {
    /// Reads every file `listen` names (relative paths from the working
    /// directory; paths inside a web config from the web config's own
    /// directory, as exporter-toolkit does). Every problem is returned.
    pub fn load(listen: &Listen) -> Result<Security, Vec<KeyProblem>> {
        let mut problems = Vec::new();
        let mut files = listen.files();
        let mut tls_files = None;
        let mut users = listen.basic_auth_users.clone();
        let mut headers = Vec::new();
        if let (Some(c), Some(k)) = (&listen.tls_cert_file, &listen.tls_key_file) {
            tls_files = Some(TlsFiles {
                cert: Pem::File(c.clone(), "tls_cert_file"),
                key: Pem::File(k.clone(), "tls_key_file"),
                client_ca: listen
                    .tls_client_ca_file
                    .clone()
                    .map(|p| Pem::File(p, "tls_client_ca_file")),
                client_optional: false,
                versions: Versions::Both,
            });
        }
        if let Some(path) = &listen.web_config_file {
            match web_config(path) {
                Ok(web) => {
                    if let Some(t) = &web.tls {
                        for pem in [Some(&t.cert), Some(&t.key), t.client_ca.as_ref()]
                            .into_iter()
                            .flatten()
                        {
                            if let Pem::File(p, _) = pem {
                                files.push(p.clone());
                            }
                        }
                    }
                    tls_files = web.tls;
                    users = web.users;
                    headers = web.headers;
                }
                Err(e) => problems.push(("web_config_file", e)),
            }
        }
        for (name, hash) in &users {
            if hash.parse::<bcrypt::HashParts>().is_err() {
                let key = if listen.web_config_file.is_some() {
                    "web_config_file"
                } else {
                    "basic_auth_users"
                };
                problems.push((
                    key,
                    format!("user `{name}`: not a bcrypt hash (write the hash `htpasswd -nBC 10 {name}` prints after the colon)"),
                ));
            }
        }
        let tls = match tls_files.map(|f| f.server_config()) {
            Some(Ok(c)) => Some(Arc::new(c)),
            Some(Err(p)) => {
                problems.push(p);
                None
            }
            None => None,
        };
        let bearer = match &listen.bearer_token_file {
            None => None,
            Some(p) => match std::fs::read(p) {
                Ok(t) => {
                    let t = t.trim_ascii().to_vec();
                    if t.is_empty() {
                        problems.push(("bearer_token_file", format!("{} is empty", p.display())));
                    }
                    Some(t)
                }
                Err(e) => {
                    problems.push((
                        "bearer_token_file",
                        format!("cannot read {}: {e}", p.display()),
                    ));
                    None
                }
            },
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        let cost = users
            .values()
            .filter_map(|h| h.parse::<bcrypt::HashParts>().ok())
            .map(|p| p.get_cost())
            .max();
        let dummy = match cost {
            Some(c) => bcrypt::hash("no password matches this", c).unwrap_or_default(),
            None => String::new(),
        };
        Ok(Security {
            tls,
            users,
            bearer,
            allow: listen.allow.clone(),
            headers,
            files,
            dummy,
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// Every file these settings were read from.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The TLS settings when the listener serves https.
    pub fn tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.tls.clone()
    }

    /// Headers added to every response (web config `http_server_config`).
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }

    /// Whether `ip` is inside `allow` (everyone when `allow` is empty).
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip))
    }

    /// What a 401 asks for.
    pub fn challenge(&self) -> &'static str {
        if self.users.is_empty() {
            "Bearer"
        } else {
            "Basic realm=\"sonde\""
        }
    }

    /// Checks the request's credentials: a bearer token when one is set,
    /// basic auth when users are set; either passes when both are.
    pub async fn authorize(&self, headers: &HeaderMap) -> Result<(), Denied> {
        if self.users.is_empty() && self.bearer.is_none() {
            return Ok(());
        }
        let value = headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes)
            .ok_or(Denied)?;
        if let (Some(token), Some(want)) = (strip_scheme(value, b"bearer"), &self.bearer) {
            return constant_time_eq(token, want).then_some(()).ok_or(Denied);
        }
        match strip_scheme(value, b"basic") {
            Some(b64) if !self.users.is_empty() => self.basic(value, b64).await,
            _ => Err(Denied),
        }
    }

    async fn basic(&self, value: &[u8], b64: &[u8]) -> Result<(), Denied> {
        use base64::Engine as _;
        let digest: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, value)
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes");
        if self.lock().contains(&digest) {
            return Ok(());
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| Denied)?;
        let text = String::from_utf8(decoded).map_err(|_| Denied)?;
        let (user, password) = text.split_once(':').ok_or(Denied)?;
        let (hash, known) = match self.users.get(user) {
            Some(h) => (h.clone(), true),
            None => (self.dummy.clone(), false),
        };
        let password = password.to_string();
        // Both checks busy: refuse now rather than queue, so waiting
        // requests cannot pile up and hold every connection slot.
        let _permit = BCRYPT.try_acquire().map_err(|_| Denied)?;
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        if !(ok && known) {
            return Err(Denied);
        }
        let mut verified = self.lock();
        if verified.len() >= VERIFIED_MAX {
            verified.clear();
        }
        verified.insert(digest);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `Scheme credentials` with the scheme matched case-insensitively.
fn strip_scheme<'a>(value: &'a [u8], scheme: &[u8]) -> Option<&'a [u8]> {
    let n = scheme.len();
    (value.len() > n && value[..n].eq_ignore_ascii_case(scheme) && value[n] == b' ')
        .then(|| value[n + 1..].trim_ascii())
}

/// Equal bytes, in time that depends on the lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A PEM source: a file (named by the `[listen]` key that gave it) or
/// inline text from a web config.
enum Pem {
    File(PathBuf, &'static str),
    Inline(String),
}

impl Pem {
    fn read(&self) -> Result<Vec<u8>, KeyProblem> {
        match self {
            Pem::File(p, key) => {
                std::fs::read(p).map_err(|e| (*key, format!("cannot read {}: {e}", p.display())))
            }
            Pem::Inline(s) => Ok(s.clone().into_bytes()),
        }
    }

    fn key(&self) -> &'static str {
        match self {
            Pem::File(_, k) => k,
            Pem::Inline(_) => "web_config_file",
        }
    }

    fn name(&self) -> String {
        match self {
            Pem::File(p, _) => p.display().to_string(),
            Pem::Inline(_) => "the inline PEM".into(),
        }
    }
}

#[derive(Clone, Copy)]
enum Versions {
    Both,
    Only12,
    Only13,
}

struct TlsFiles {
    cert: Pem,
    key: Pem,
    client_ca: Option<Pem>,
    /// Verify a client certificate when one is given, accept clients
    /// without one (exporter-toolkit's VerifyClientCertIfGiven).
    client_optional: bool,
    versions: Versions,
}

impl TlsFiles {
    fn server_config(&self) -> Result<rustls::ServerConfig, KeyProblem> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert_pem = self.cert.read()?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| {
                (
                    self.cert.key(),
                    format!("{}: not a PEM certificate: {e}", self.cert.name()),
                )
            })?;
        if certs.is_empty() {
            return Err((
                self.cert.key(),
                format!("{}: no certificate in it", self.cert.name()),
            ));
        }
        let key_pem = self.key.read()?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            (
                self.key.key(),
                format!("{}: not a PEM private key: {e}", self.key.name()),
            )
        })?;
        let versions: &[&rustls::SupportedProtocolVersion] = match self.versions {
            Versions::Both => rustls::ALL_VERSIONS,
            Versions::Only12 => &[&rustls::version::TLS12],
            Versions::Only13 => &[&rustls::version::TLS13],
        };
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(versions)
            .map_err(|e| (self.cert.key(), e.to_string()))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let pem = ca.read()?;
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(&pem) {
                    let c = c.map_err(|e| {
                        (
                            ca.key(),
                            format!("{}: not a PEM certificate: {e}", ca.name()),
                        )
                    })?;
                    roots.add(c).map_err(|e| {
                        (
                            ca.key(),
                            format!("{}: unusable CA certificate: {e}", ca.name()),
                        )
                    })?;
                }
                if roots.is_empty() {
                    return Err((ca.key(), format!("{}: no certificate in it", ca.name())));
                }
                let mut v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                );
                if self.client_optional {
                    v = v.allow_unauthenticated();
                }
                let verifier = v.build().map_err(|e| (ca.key(), e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(certs, key).map_err(|e| {
            (
                self.key.key(),
                format!(
                    "{} and {} do not make a usable certificate: {e}",
                    self.cert.name(),
                    self.key.name()
                ),
            )
        })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// What Sonde takes from a web configuration file.
struct Web {
    tls: Option<TlsFiles>,
    users: BTreeMap<String, String>,
    headers: Vec<(HeaderName, HeaderValue)>,
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

fn web_config(path: &Path) -> Result<Web, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn listen() -> Listen {
        Listen::on("127.0.0.1:0")
    }

    #[test]
    fn schemes_and_tokens() {
        assert_eq!(strip_scheme(b"Bearer abc", b"bearer"), Some(&b"abc"[..]));
        assert_eq!(strip_scheme(b"bearer  abc ", b"bearer"), Some(&b"abc"[..]));
        assert_eq!(strip_scheme(b"Bearerabc", b"bearer"), None);
        assert_eq!(strip_scheme(b"Basic xyz", b"bearer"), None);
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }

    #[tokio::test]
    async fn basic_auth_verifies_and_caches() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let mut l = listen();
        l.basic_auth_users.insert("alice".into(), hash);
        let s = Security::load(&l).unwrap_or_else(|_| panic!("load"));
        let auth = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            h
        };
        use base64::Engine as _;
        let b = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert_eq!(s.authorize(&auth(&b("alice:pw"))).await, Ok(()));
        assert_eq!(s.lock().len(), 1);
        assert_eq!(s.authorize(&auth(&b("alice:pw"))).await, Ok(()));
        assert_eq!(s.authorize(&auth(&b("alice:no"))).await, Err(Denied));
        assert_eq!(s.authorize(&auth(&b("bob:pw"))).await, Err(Denied));
        assert_eq!(s.authorize(&auth("Bearer pw")).await, Err(Denied));
        assert_eq!(s.authorize(&HeaderMap::new()).await, Err(Denied));
        assert_eq!(s.lock().len(), 1);
    }

    #[test]
    fn bad_files_name_their_keys() {
        let mut l = listen();
        l.tls_cert_file = Some("/nonexistent/cert.pem".into());
        l.tls_key_file = Some("/nonexistent/key.pem".into());
        l.bearer_token_file = Some("/nonexistent/token".into());
        l.basic_auth_users
            .insert("alice".into(), "plaintext".into());
        let Err(problems) = Security::load(&l) else {
            panic!("loaded")
        };
        let keys: Vec<_> = problems.iter().map(|p| p.0).collect();
        assert_eq!(
            keys,
            ["basic_auth_users", "tls_cert_file", "bearer_token_file"]
        );
    }

    #[test]
    fn web_config_reads_the_toolkit_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        let hash = bcrypt::hash("pw", 4).unwrap();
        std::fs::write(
            &path,
            format!("basic_auth_users:\n  alice: {hash}\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n"),
        )
        .unwrap();
        let web = web_config(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(web.tls.is_none());
        assert_eq!(web.users.len(), 1);
        assert_eq!(web.headers[0].0, "x-frame-options");
        std::fs::write(
            &path,
            "tls_server_config:\n  cert_file: c.pem\n  bogus: 1\n",
        )
        .unwrap();
        let e = web_config(&path).err().unwrap();
        assert!(e.contains("bogus"), "{e}");
        std::fs::write(
            &path,
            "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  client_ca_file: ca.pem\n",
        )
        .unwrap();
        let e = web_config(&path).err().unwrap();
        assert!(e.contains("RequireAndVerifyClientCert"), "{e}");
    }
}
