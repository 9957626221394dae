//! `config/hindsight.toml`: the flight recorder's configuration.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::client::{PullSource, SourceKeys};
use crate::config::{
    check_sections, listen_section, section, ByteSize, Checker, ConfigError, HumanDuration, Listen,
    LogConfig, Segment, Source,
};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:4254";

/// One snapshot a second: the resolution of a recording.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, PartialEq)]
pub struct HindsightConfig {
    pub source: PullSource,
    pub buffer: Buffer,
    pub dump: Dump,
    pub listen: Listen,
    pub log: LogConfig,
}

#[derive(Debug, PartialEq, Deserialize)]
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

#[derive(Debug, PartialEq, Deserialize)]
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
        let src = PullSource::section(
            &mut c,
            &mut table,
            "source",
            SourceKeys::Interval(DEFAULT_INTERVAL),
        );
        let buffer = section::<Buffer>(&mut c, &mut table, "buffer");
        let dump = section::<Dump>(&mut c, &mut table, "dump");
        let listen = listen_section(&mut c, &mut table, DEFAULT_LISTEN);
        crate::serve::check_listen(&mut c, &listen);
        let log = section::<LogConfig>(&mut c, &mut table, "log");
        let at = |s: &str, k: &str| [Segment::Key(s.into()), Segment::Key(k.into())];
        if buffer.duration.0 < src.interval {
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
