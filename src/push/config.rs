//! `config/push.toml`: the pusher's configuration.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{
    check_sections, listen_section, section, ByteSize, Checker, ConfigError, HttpUrl,
    HumanDuration, Listen, LogConfig, Segment, Source,
};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:4253";

#[derive(Debug)]
pub struct PushConfig {
    pub source: SourceConfig,
    pub spool: Spool,
    pub sinks: Vec<Sink>,
    pub listen: Listen,
    pub log: LogConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    pub url: HttpUrl,
    pub interval: HumanDuration,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            url: HttpUrl("http://127.0.0.1:4251".into()),
            interval: HumanDuration(Duration::from_secs(10)),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Spool {
    pub path: PathBuf,
    pub max_bytes: ByteSize,
    pub max_age: HumanDuration,
}

impl Default for Spool {
    fn default() -> Self {
        Spool {
            path: PathBuf::from("/var/lib/sonde/spool"),
            max_bytes: ByteSize(512 << 20),
            max_age: HumanDuration(Duration::from_secs(3600)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    RemoteWrite,
    Http,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SinkFormat {
    #[default]
    Msgpack,
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sink {
    pub kind: SinkKind,
    pub url: HttpUrl,
    pub bearer_token_file: Option<PathBuf>,
    /// `{ username = "…", password_file = "…" }` (or `password`).
    pub basic_auth: Option<BasicAuth>,
    /// A CA (PEM) to trust for an https upstream, besides the usual roots.
    pub tls_ca_file: Option<PathBuf>,
    /// A client certificate and key (PEM) for upstreams that want one.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Only for `kind = "http"`.
    pub format: Option<SinkFormat>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub password: Option<String>,
    /// Read at every send, so a rotated password needs no reload.
    pub password_file: Option<PathBuf>,
}

impl PushConfig {
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        Self::from_source(&Source::read(path)?)
    }

    pub fn from_source(source: &Source) -> Result<Self, ConfigError> {
        let mut table = source.table()?;
        let mut c = Checker::new(source);
        check_sections(
            &mut c,
            &table,
            &["source", "spool", "sinks", "listen", "log"],
        );
        let src = section::<SourceConfig>(&mut c, &mut table, "source");
        let spool = section::<Spool>(&mut c, &mut table, "spool");
        let listen = listen_section(&mut c, &mut table, DEFAULT_LISTEN);
        crate::serve::check_listen(&mut c, &listen);
        let log = section::<LogConfig>(&mut c, &mut table, "log");
        let sinks: Vec<Sink> = match table.remove("sinks") {
            Some(v) => c
                .deserialize(&[Segment::Key("sinks".into())], v)
                .unwrap_or_default(),
            None => {
                c.problem(
                    &[],
                    "no [[sinks]]: add at least one, e.g. [[sinks]] kind = \"remote_write\"",
                );
                Vec::new()
            }
        };
        if src.interval.0 < Duration::from_millis(100) {
            c.problem(
                &[
                    Segment::Key("source".into()),
                    Segment::Key("interval".into()),
                ],
                "must be at least 100ms",
            );
        }
        if spool.max_bytes.0 < 64 << 10 {
            c.problem(
                &[
                    Segment::Key("spool".into()),
                    Segment::Key("max_bytes".into()),
                ],
                "must be at least 64KiB",
            );
        }
        for (i, s) in sinks.iter().enumerate() {
            let at = |key: &str| {
                vec![
                    Segment::Key("sinks".into()),
                    Segment::Index(i),
                    Segment::Key(key.into()),
                ]
            };
            if sinks[..i].iter().any(|o| o.url.0 == s.url.0) {
                c.problem(&at("url"), format!("`{}` is listed twice", s.url.0));
            }
            if let Some(p) = &s.bearer_token_file {
                if let Err(e) = std::fs::metadata(p) {
                    c.problem(
                        &at("bearer_token_file"),
                        format!("cannot read {}: {e}", p.display()),
                    );
                }
            }
            if s.tls_cert_file.is_some() != s.tls_key_file.is_some() {
                c.problem(
                    &at("tls_cert_file"),
                    "tls_cert_file and tls_key_file go together: set both for a client certificate",
                );
            } else if let Err(e) = super::sink::tls_client(&super::sink::TlsFiles::of(s)) {
                let key = if e.contains("tls_ca_file") {
                    "tls_ca_file"
                } else {
                    "tls_cert_file"
                };
                c.problem(&at(key), e);
            }
            if let Some(b) = &s.basic_auth {
                if b.password.is_some() == b.password_file.is_some() {
                    c.problem(&at("basic_auth"), "set one of password and password_file");
                }
                if s.bearer_token_file.is_some() {
                    c.problem(
                        &at("basic_auth"),
                        "set basic_auth or bearer_token_file, not both",
                    );
                }
                if let Some(p) = &b.password_file {
                    if let Err(e) = std::fs::metadata(p) {
                        c.problem(
                            &at("basic_auth"),
                            format!("cannot read password_file {}: {e}", p.display()),
                        );
                    }
                }
            }
            if s.kind == SinkKind::RemoteWrite && s.format.is_some() {
                c.problem(
                    &[
                        Segment::Key("sinks".into()),
                        Segment::Index(i),
                        Segment::Key("format".into()),
                    ],
                    "only applies to kind = \"http\"",
                );
            }
        }
        c.finish(Some(PushConfig {
            source: src,
            spool,
            sinks,
            listen,
            log,
        }))
    }
}
