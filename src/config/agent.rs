//! `config/agent.toml`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::{
    check_sections, section, Checker, ConfigError, HumanDuration, ListenAddr, LogConfig, Segment,
    Source,
};
use crate::agent::sampler::SamplerSpec;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:4251";

#[derive(Debug)]
pub struct AgentConfig {
    pub general: General,
    pub log: LogConfig,
    pub defaults: Defaults,
    /// Per-sampler settings, only for samplers named in the file.
    pub samplers: BTreeMap<String, SamplerSettings>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct General {
    pub listen: ListenAddr,
    /// How long a refreshed snapshot serves scrapes before the next refresh.
    pub ttl: HumanDuration,
}

impl Default for General {
    fn default() -> Self {
        General {
            listen: ListenAddr(DEFAULT_LISTEN.parse::<SocketAddr>().expect("valid default")),
            ttl: HumanDuration(Duration::from_millis(100)),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Defaults {
    pub enabled: bool,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults { enabled: true }
    }
}

#[derive(Debug, Clone)]
pub struct SamplerSettings {
    pub enabled: Option<bool>,
    /// The rest of the section, validated by the sampler's spec.
    pub options: toml::Value,
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::from_source(&Source::read(path)?)
    }

    pub fn from_source(source: &Source) -> Result<Self, ConfigError> {
        let mut table = source.table()?;
        let mut c = Checker::new(source);
        check_sections(&mut c, &table, &["general", "log", "defaults", "samplers"]);
        let general = section::<General>(&mut c, &mut table, "general");
        let log = section::<LogConfig>(&mut c, &mut table, "log");
        let defaults = section::<Defaults>(&mut c, &mut table, "defaults");
        let samplers = samplers(&mut c, table.remove("samplers"));
        let config = AgentConfig {
            general,
            log,
            defaults,
            samplers,
        };
        c.finish(Some(config))
    }

    /// Whether `name` runs: its own `enabled`, else `[defaults] enabled`.
    pub fn enabled(&self, name: &str) -> bool {
        self.samplers
            .get(name)
            .and_then(|s| s.enabled)
            .unwrap_or(self.defaults.enabled)
    }

    pub fn options(&self, name: &str) -> toml::Value {
        self.samplers
            .get(name)
            .map(|s| s.options.clone())
            .unwrap_or_else(|| toml::Value::Table(Default::default()))
    }
}

fn samplers(c: &mut Checker<'_>, value: Option<toml::Value>) -> BTreeMap<String, SamplerSettings> {
    let mut out = BTreeMap::new();
    let Some(value) = value else { return out };
    let base = [Segment::Key("samplers".into())];
    let toml::Value::Table(table) = value else {
        c.problem(&base, "must be a table of [samplers.<name>] sections");
        return out;
    };
    for (name, value) in table {
        let path = [base[0].clone(), Segment::Key(name.clone())];
        let Some(spec) = SamplerSpec::find(&name) else {
            c.problem(
                &path,
                format!(
                    "unknown sampler `{name}`, known samplers: {}",
                    SamplerSpec::names().join(", ")
                ),
            );
            continue;
        };
        let toml::Value::Table(mut section) = value else {
            c.problem(
                &path,
                format!("must be a table, e.g. [samplers.{name}] enabled = true"),
            );
            continue;
        };
        let enabled = match section.remove("enabled") {
            None => None,
            Some(toml::Value::Boolean(b)) => Some(b),
            Some(other) => {
                let mut p = path.to_vec();
                p.push(Segment::Key("enabled".into()));
                c.problem(
                    &p,
                    format!("expected true or false, found {}", other.type_str()),
                );
                None
            }
        };
        let options = toml::Value::Table(section);
        if (spec.validate)(c, &path, options.clone()) {
            out.insert(name, SamplerSettings { enabled, options });
        }
    }
    out
}
