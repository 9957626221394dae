//! `config/push.toml`: the pusher's configuration.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::client::{BasicAuth, PullSource, SourceKeys, Upstream};
use crate::config::{
    check_sections, listen_section, section, ByteSize, Checker, ConfigError, HttpUrl,
    HumanDuration, Listen, LogConfig, Segment, Source,
};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:4253";

/// The pull interval when `[source]` names none.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, PartialEq)]
pub struct PushConfig {
    pub source: PullSource,
    pub spool: Spool,
    pub sinks: Vec<Sink>,
    pub listen: Listen,
    pub log: LogConfig,
}

#[derive(Debug, PartialEq, Deserialize)]
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

#[derive(Debug, PartialEq, Deserialize)]
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
    /// Only for `kind = "remote_write"`: histograms as native histograms
    /// (the receiver must take them: Prometheus with
    /// `--enable-feature=native-histograms`).
    #[serde(default)]
    pub native_histograms: bool,
}

impl Sink {
    pub fn upstream(&self) -> Upstream {
        Upstream {
            tls_ca_file: self.tls_ca_file.clone(),
            tls_cert_file: self.tls_cert_file.clone(),
            tls_key_file: self.tls_key_file.clone(),
            bearer_token_file: self.bearer_token_file.clone(),
            basic_auth: self.basic_auth.clone(),
        }
    }
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
        let src = PullSource::section(
            &mut c,
            &mut table,
            "source",
            SourceKeys::IntervalAndLabels(DEFAULT_INTERVAL),
        );
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
            for (key, message) in s.upstream().check() {
                c.problem(&at(key), message);
            }
            if s.kind == SinkKind::Http && s.native_histograms {
                c.problem(
                    &at("native_histograms"),
                    "only applies to kind = \"remote_write\"",
                );
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
