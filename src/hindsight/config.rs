//! `config/hindsight.toml`: the flight recorder's configuration.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{
    check_sections, listen_section, section, ByteSize, Checker, ConfigError, HttpUrl,
    HumanDuration, Listen, LogConfig, Segment, Source,
};
use crate::snapshot::upstream::{self, Upstream};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:4254";

#[derive(Debug)]
pub struct HindsightConfig {
    pub source: SourceConfig,
    pub buffer: Buffer,
    pub dump: Dump,
    pub listen: Listen,
    pub log: LogConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    pub url: HttpUrl,
    pub interval: HumanDuration,
    /// TLS and credentials for an agent whose `[listen]` needs them.
    #[serde(skip)]
    pub upstream: Upstream,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            url: HttpUrl("http://127.0.0.1:4251".into()),
            interval: HumanDuration(Duration::from_secs(1)),
            upstream: Upstream::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Buffer {
    pub path: PathBuf,
    pub duration: HumanDuration,
    pub max_bytes: ByteSize,
}

impl Default for Buffer {
    fn default() -> Self {
        Buffer {
            path: PathBuf::from("/var/lib/sonde/hindsight"),
            duration: HumanDuration(Duration::from_secs(15 * 60)),
            max_bytes: ByteSize(1 << 30),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dump {
    pub output_dir: PathBuf,
}

impl Default for Dump {
    fn default() -> Self {
        Dump {
            output_dir: PathBuf::from("/var/lib/sonde/dumps"),
        }
    }
}

impl HindsightConfig {
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        Self::from_source(&Source::read(path)?)
    }

    pub fn from_source(source: &Source) -> Result<Self, ConfigError> {
        let mut table = source.table()?;
        let mut c = Checker::new(source);
        check_sections(
            &mut c,
            &table,
            &["source", "buffer", "dump", "listen", "log"],
        );
        let upstream = upstream::take(
            &mut c,
            &[Segment::Key("source".into())],
            table.get_mut("source"),
        );
        let mut src = section::<SourceConfig>(&mut c, &mut table, "source");
        src.upstream = upstream;
        let buffer = section::<Buffer>(&mut c, &mut table, "buffer");
        let dump = section::<Dump>(&mut c, &mut table, "dump");
        let listen = listen_section(&mut c, &mut table, DEFAULT_LISTEN);
        crate::serve::check_listen(&mut c, &listen);
        let log = section::<LogConfig>(&mut c, &mut table, "log");
        let at = |s: &str, k: &str| [Segment::Key(s.into()), Segment::Key(k.into())];
        if src.interval.0 < Duration::from_millis(100) {
            c.problem(&at("source", "interval"), "must be at least 100ms");
        }
        if buffer.duration.0 < src.interval.0 {
            c.problem(
                &at("buffer", "duration"),
                "must be at least one [source] interval",
            );
        }
        if buffer.max_bytes.0 < 1 << 20 {
            c.problem(&at("buffer", "max_bytes"), "must be at least 1MiB");
        }
        c.finish(Some(HindsightConfig {
            source: src,
            buffer,
            dump,
            listen,
            log,
        }))
    }
}
