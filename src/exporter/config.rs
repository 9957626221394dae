//! `config/exporter.toml`: the relay exporter's configuration.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{
    check_sections, listen_section, section, Checker, ConfigError, HttpUrl, HumanDuration, Listen,
    LogConfig, Segment, Source,
};
use crate::snapshot::upstream::{self, Upstream};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:4252";

#[derive(Debug)]
pub struct ExporterConfig {
    pub listen: Listen,
    pub general: General,
    pub log: LogConfig,
    pub sources: Vec<SourceConfig>,
    pub prometheus: Prometheus,
}

#[derive(Debug, Deserialize)]
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub url: HttpUrl,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// TLS and credentials for an agent whose `[listen]` needs them.
    #[serde(skip)]
    pub upstream: Upstream,
}

#[derive(Debug, Deserialize)]
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
        let sources: Vec<SourceConfig> = match table.remove("sources") {
            Some(mut v) => {
                // Each source's TLS and credential keys, by index.
                let mut upstreams = Vec::new();
                if let toml::Value::Array(items) = &mut v {
                    for (i, item) in items.iter_mut().enumerate() {
                        let at = [Segment::Key("sources".into()), Segment::Index(i)];
                        upstreams.push(upstream::take(&mut c, &at, Some(item)));
                    }
                }
                let mut sources: Vec<SourceConfig> = c
                    .deserialize(&[Segment::Key("sources".into())], v)
                    .unwrap_or_default();
                for (s, u) in sources.iter_mut().zip(upstreams) {
                    s.upstream = u;
                }
                sources
            }
            None => {
                c.problem(&[], "no [[sources]]: add at least one, e.g. [[sources]] url = \"http://127.0.0.1:4251\"");
                Vec::new()
            }
        };
        for (i, s) in sources.iter().enumerate() {
            if sources[..i]
                .iter()
                .any(|o| o.url.0.trim_end_matches('/') == s.url.0.trim_end_matches('/'))
            {
                c.problem(
                    &[
                        Segment::Key("sources".into()),
                        Segment::Index(i),
                        Segment::Key("url".into()),
                    ],
                    format!("`{}` is listed twice", s.url.0),
                );
            }
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
