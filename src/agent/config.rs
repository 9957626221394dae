//! `config/agent.toml`: the agent's configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::bpf::BpfOptions;
use crate::config::{
    check_sections, listen_section, section, ByteSize, Checker, ConfigError, HumanDuration, Listen,
    LogConfig, Segment, Source,
};
use crate::privileges::{self, Account};
use crate::prometheus::buckets::{self, BucketSets};
use crate::samplers::SamplerSpec;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:4251";

/// Reads the pusher's config named by `push.config` and returns its spool
/// directory (main supplies it: a mode does not import another mode).
pub type PushSpool<'a> = &'a dyn Fn(&Path) -> Result<PathBuf, String>;

#[derive(Debug, PartialEq)]
pub struct AgentConfig {
    pub listen: Listen,
    pub general: General,
    pub prometheus: Prometheus,
    pub log: LogConfig,
    pub defaults: Defaults,
    /// Per-sampler settings, only for samplers named in the file.
    pub samplers: BTreeMap<String, SamplerSettings>,
    pub push: Push,
    /// `push.user` resolved, when the pusher is enabled.
    pub push_user: Option<User>,
    pub privileges: Privileges,
    /// `privileges.user` resolved, when set.
    pub privileges_user: Option<Account>,
}

/// `[privileges]`: what the agent keeps after every BPF program is loaded
/// and attached (see `crate::privileges`).
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Privileges {
    /// Drop every capability the refreshes do not need, set no_new_privs.
    pub drop: bool,
    /// Switch to this user (and its groups) too; empty: stay uid 0.
    pub user: String,
}

impl Default for Privileges {
    fn default() -> Self {
        Privileges {
            drop: true,
            user: String::new(),
        }
    }
}

/// Resolves `privileges.user`, so an unknown user stops the agent at load.
fn check_privileges(c: &mut Checker, p: &Privileges) -> Option<Account> {
    if p.user.is_empty() {
        return None;
    }
    let key = [
        Segment::Key("privileges".into()),
        Segment::Key("user".into()),
    ];
    if !p.drop {
        c.problem(&key, "needs `drop = true` (the switch is part of the drop)");
        return None;
    }
    let Some((uid, gid)) = privileges::lookup_user(&p.user) else {
        c.problem(&key, format!("no such user `{}`", p.user));
        return None;
    };
    Some(Account {
        name: p.user.clone(),
        uid,
        gid,
    })
}

/// `[push]`: run `sonde push` as a supervised child of the agent.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Push {
    pub enabled: bool,
    pub config: PathBuf,
    pub user: String,
}

impl Default for Push {
    fn default() -> Self {
        Push {
            enabled: false,
            config: PathBuf::from("/etc/sonde/push.toml"),
            user: "sonde".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// The pusher's spool directory, created for the user at start.
    pub spool: PathBuf,
}

/// Resolves `push.user` and validates `push.config`, so a broken pusher
/// setup stops the agent at start with the key that is wrong.
fn check_push(c: &mut Checker, push: &Push, push_spool: PushSpool<'_>) -> Option<User> {
    let key = |k: &str| [Segment::Key("push".into()), Segment::Key(k.into())];
    let spool = match push_spool(&push.config) {
        Ok(p) => Some(p),
        Err(e) => {
            c.problem(
                &key("config"),
                format!("the push config is not usable:\n{e}"),
            );
            None
        }
    };
    let Some((uid, gid)) = privileges::lookup_user(&push.user) else {
        c.problem(&key("user"), format!("no such user `{}`", push.user));
        return None;
    };
    Some(User {
        name: push.user.clone(),
        uid,
        gid,
        spool: spool?,
    })
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct General {
    /// How long a refreshed snapshot serves scrapes before the next refresh.
    pub ttl: HumanDuration,
}

impl Default for General {
    fn default() -> Self {
        General {
            ttl: HumanDuration(Duration::from_millis(100)),
        }
    }
}

/// The fixed bucket set of classic histograms on `/metrics`: powers of two
/// from `min` (rounded down) to `max` (rounded up), per unit.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Prometheus {
    pub histogram_time_min: HumanDuration,
    pub histogram_time_max: HumanDuration,
    pub histogram_bytes_min: ByteSize,
    pub histogram_bytes_max: ByteSize,
}

impl Default for Prometheus {
    fn default() -> Self {
        Prometheus {
            histogram_time_min: HumanDuration(buckets::TIME_MIN),
            histogram_time_max: HumanDuration(buckets::TIME_MAX),
            histogram_bytes_min: ByteSize(buckets::BYTES_MIN),
            histogram_bytes_max: ByteSize(buckets::BYTES_MAX),
        }
    }
}

impl Prometheus {
    /// The bucket sets these ranges give (rounded outwards to powers of two).
    pub fn bucket_sets(&self) -> BucketSets {
        BucketSets {
            time: buckets::powers(
                self.histogram_time_min.0.as_nanos() as u64,
                self.histogram_time_max.0.as_nanos() as u64,
            ),
            bytes: buckets::powers(self.histogram_bytes_min.0, self.histogram_bytes_max.0),
            ..BucketSets::default()
        }
    }
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Defaults {
    pub enabled: bool,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults { enabled: true }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SamplerSettings {
    pub enabled: Option<bool>,
    /// `hook` and `disable` of a BPF sampler.
    pub bpf: BpfOptions,
    /// The rest of the section, validated by the sampler's spec.
    pub options: toml::Value,
}

impl AgentConfig {
    pub fn load(path: &Path, push_spool: PushSpool<'_>) -> Result<Self, ConfigError> {
        Self::from_source(&Source::read(path)?, push_spool)
    }

    pub fn from_source(source: &Source, push_spool: PushSpool<'_>) -> Result<Self, ConfigError> {
        let mut table = source.table()?;
        let mut c = Checker::new(source);
        check_sections(
            &mut c,
            &table,
            &[
                "listen",
                "general",
                "log",
                "prometheus",
                "defaults",
                "samplers",
                "push",
                "privileges",
            ],
        );
        let listen = listen_section(&mut c, &mut table, DEFAULT_LISTEN);
        crate::serve::check_listen(&mut c, &listen);
        let general = section::<General>(&mut c, &mut table, "general");
        let prometheus = section::<Prometheus>(&mut c, &mut table, "prometheus");
        for (key, ok) in [
            (
                "histogram_time_max",
                prometheus.histogram_time_min.0 < prometheus.histogram_time_max.0,
            ),
            (
                "histogram_bytes_max",
                prometheus.histogram_bytes_min.0 < prometheus.histogram_bytes_max.0,
            ),
        ] {
            if !ok {
                c.problem(
                    &[Segment::Key("prometheus".into()), Segment::Key(key.into())],
                    "must be larger than the matching _min",
                );
            }
        }
        let log = section::<LogConfig>(&mut c, &mut table, "log");
        let defaults = section::<Defaults>(&mut c, &mut table, "defaults");
        let samplers = samplers(&mut c, table.remove("samplers"));
        let push = section::<Push>(&mut c, &mut table, "push");
        let push_user = if push.enabled {
            check_push(&mut c, &push, push_spool)
        } else {
            None
        };
        let privileges = section::<Privileges>(&mut c, &mut table, "privileges");
        let privileges_user = check_privileges(&mut c, &privileges);
        if let (Some(p), Some(u)) = (&push_user, &privileges_user) {
            if (p.uid, p.gid) != (u.uid, u.gid) {
                c.problem(
                    &[Segment::Key("privileges".into()), Segment::Key("user".into())],
                    format!(
                        "with [push] enabled it must be empty or the push user `{}`: starting the pusher as another user keeps CAP_SETUID, with which the agent could become root again",
                        p.name
                    ),
                );
            }
        }
        let config = AgentConfig {
            listen,
            push,
            push_user,
            privileges,
            privileges_user,
            general,
            prometheus,
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

    /// The sampler's own options (its section without `enabled`, `hook`
    /// and `disable`).
    pub fn options(&self, name: &str) -> toml::Value {
        self.samplers
            .get(name)
            .map(|s| s.options.clone())
            .unwrap_or_else(|| toml::Value::Table(Default::default()))
    }

    /// A BPF sampler's `hook` and `disable`.
    pub fn bpf_options(&self, name: &str) -> BpfOptions {
        self.samplers
            .get(name)
            .map(|s| s.bpf.clone())
            .unwrap_or_default()
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
        if let Some((bpf, options)) = spec.check(c, &path, section) {
            out.insert(
                name,
                SamplerSettings {
                    enabled,
                    bpf,
                    options,
                },
            );
        }
    }
    out
}
