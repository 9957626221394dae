//! `config/exporter.toml`: the exporter's configuration.

use std::time::Duration;

use serde::Deserialize;

use crate::client::{PullSource, SourceKeys};
use crate::config::{
    check_sections, listen_section, section, Checker, ConfigError, HumanDuration, Listen,
    LogConfig, Segment, Source,
};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:4252";

#[derive(Debug, PartialEq)]
pub struct ExporterConfig {
    pub listen: Listen,
    pub general: General,
    pub log: LogConfig,
    /// Pulled every `general.interval` (their own `interval` is that).
    pub sources: Vec<PullSource>,
    pub prometheus: Prometheus,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct General {
    pub interval: HumanDuration,
    pub timeout: HumanDuration,
}

impl Default for General {
    fn default() -> Self {
        General {
            interval: HumanDuration(Duration::from_secs(1)),
            timeout: HumanDuration(Duration::from_millis(500)),
        }
    }
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Prometheus {
    pub percentiles: Vec<f64>,
    pub histograms: bool,
}

impl Default for Prometheus {
    fn default() -> Self {
        Prometheus {
            percentiles: vec![0.5, 0.9, 0.99, 0.999],
            histograms: false,
        }
    }
}

impl ExporterConfig {
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        Self::from_source(&Source::read(path)?)
    }

    pub fn from_source(source: &Source) -> Result<Self, ConfigError> {
        let mut table = source.table()?;
        let mut c = Checker::new(source);
        check_sections(
            &mut c,
            &table,
            &["listen", "general", "log", "sources", "prometheus"],
        );
        let listen = listen_section(&mut c, &mut table, DEFAULT_LISTEN);
        crate::serve::check_listen(&mut c, &listen);
        let general = section::<General>(&mut c, &mut table, "general");
        let log = section::<LogConfig>(&mut c, &mut table, "log");
        let prometheus = section::<Prometheus>(&mut c, &mut table, "prometheus");
        let mut sources = PullSource::array(&mut c, &mut table, "sources", SourceKeys::Labels);
        for s in &mut sources {
            s.interval = general.interval.0;
        }
        if prometheus.percentiles.len() > 16 {
            c.problem(
                &[
                    Segment::Key("prometheus".into()),
                    Segment::Key("percentiles".into()),
                ],
                "at most 16 percentiles",
            );
        }
        if general.interval.0 < Duration::from_millis(100) {
            c.problem(
                &[
                    Segment::Key("general".into()),
                    Segment::Key("interval".into()),
                ],
                "must be at least 100ms",
            );
        }
        if general.timeout.0 > general.interval.0 {
            c.problem(
                &[
                    Segment::Key("general".into()),
                    Segment::Key("timeout".into()),
                ],
                "must not be longer than general.interval",
            );
        }
        for (i, p) in prometheus.percentiles.iter().enumerate() {
            if !(*p > 0.0 && *p < 1.0) {
                c.problem(
                    &[
                        Segment::Key("prometheus".into()),
                        Segment::Key("percentiles".into()),
                        Segment::Index(i),
                    ],
                    format!("{p} is not a quantile strictly between 0 and 1"),
                );
            }
        }
        c.finish(Some(ExporterConfig {
            listen,
            general,
            log,
            sources,
            prometheus,
        }))
    }
}
