//! Who may talk to an endpoint: TLS (and mutual TLS), basic auth with
//! bcrypt hashes, a bearer token, client networks, and extra response
//! headers — from the `[listen]` keys or from an exporter-toolkit web
//! configuration file. Built whole from the files and swapped whole on a
//! reload or when a file changes, so a request sees one consistent set.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderMap, HeaderName, HeaderValue};

use super::tls::{Pem, TlsFiles, Versions};
use super::webconfig::web_config;
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
