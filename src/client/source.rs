//! The agent a mode pulls snapshots from: `[source]` of the pusher and of
//! hindsight, each `[[sources]]` of the exporter. One type and one
//! reader, so the same keys mean the same everywhere and a key one mode
//! does not take is an error that says which mode does.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::upstream::{self, Upstream};
use crate::config::{Checker, HttpUrl, HumanDuration, Segment};

/// The agent every mode pulls from when the config names none.
pub const DEFAULT_URL: &str = "http://127.0.0.1:4251";

/// Pulls below this would load the agent for nothing (its TTL is 100 ms).
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// An agent to pull `<url>/metrics/binary` from.
#[derive(Debug, Clone, PartialEq)]
pub struct PullSource {
    pub url: HttpUrl,
    /// How often to pull; the exporter pulls every source at its
    /// `[general] interval`, and leaves this at that.
    pub interval: Duration,
    /// Labels added to every series relayed (exporter) or pushed (pusher)
    /// from it.
    pub labels: BTreeMap<String, String>,
    /// TLS and credentials, for an agent whose `[listen]` needs them.
    pub upstream: Upstream,
}

/// The keys a mode's sources take besides `url` and the TLS/credential
/// keys: its own `interval` (with its default), `labels`, or both (the
/// pusher: its labels tell its host's series apart at a shared receiver).
#[derive(Debug, Clone, Copy)]
pub enum SourceKeys {
    Interval(Duration),
    Labels,
    IntervalAndLabels(Duration),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    url: Option<HttpUrl>,
    interval: Option<HumanDuration>,
    labels: Option<BTreeMap<String, String>>,
}

impl PullSource {
    /// The single table `[name]` of `table` (absent: every default).
    pub fn section(
        c: &mut Checker<'_>,
        table: &mut toml::Table,
        name: &str,
        keys: SourceKeys,
    ) -> PullSource {
        let value = table
            .remove(name)
            .unwrap_or_else(|| toml::Value::Table(Default::default()));
        let path = [Segment::Key(name.into())];
        let default = || PullSource {
            url: HttpUrl(DEFAULT_URL.into()),
            interval: match keys {
                SourceKeys::Interval(d) | SourceKeys::IntervalAndLabels(d) => d,
                SourceKeys::Labels => Duration::ZERO,
            },
            labels: BTreeMap::new(),
            upstream: Upstream::default(),
        };
        Self::parse(c, &path, value, keys, true).unwrap_or_else(default)
    }

    /// The array of tables `[[name]]` of `table`: at least one, each URL
    /// once.
    pub fn array(
        c: &mut Checker<'_>,
        table: &mut toml::Table,
        name: &str,
        keys: SourceKeys,
    ) -> Vec<PullSource> {
        let at = |i: usize| vec![Segment::Key(name.into()), Segment::Index(i)];
        let items = match table.remove(name) {
            Some(toml::Value::Array(items)) if !items.is_empty() => items,
            Some(_) => {
                c.problem(
                    &[Segment::Key(name.into())],
                    format!("must be one or more tables: [[{name}]] url = \"{DEFAULT_URL}\""),
                );
                return Vec::new();
            }
            None => {
                c.problem(
                    &[],
                    format!(
                        "no [[{name}]]: add at least one, e.g. [[{name}]] url = \"{DEFAULT_URL}\""
                    ),
                );
                return Vec::new();
            }
        };
        let mut out: Vec<PullSource> = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let Some(s) = Self::parse(c, &at(i), item, keys, false) else {
                continue;
            };
            let same =
                |o: &PullSource| o.url.0.trim_end_matches('/') == s.url.0.trim_end_matches('/');
            if out.iter().any(same) {
                let mut p = at(i);
                p.push(Segment::Key("url".into()));
                c.problem(&p, format!("`{}` is listed twice", s.url.0));
            }
            out.push(s);
        }
        out
    }

    /// One source at `path`; `None` after recording its problems.
    fn parse(
        c: &mut Checker<'_>,
        path: &[Segment],
        mut value: toml::Value,
        keys: SourceKeys,
        url_default: bool,
    ) -> Option<PullSource> {
        let key = |k: &str| {
            let mut p = path.to_vec();
            p.push(Segment::Key(k.into()));
            p
        };
        if !value.is_table() {
            c.problem(path, "must be a table with `url`");
            return None;
        }
        let upstream = upstream::take(c, path, Some(&mut value));
        let problems = c.problems.len();
        let raw: Keys = c.deserialize(path, value)?;
        // Keys of the other kind of source: name who takes them.
        match keys {
            SourceKeys::Labels if raw.interval.is_some() => c.problem(
                &key("interval"),
                "the exporter pulls every source at [general] interval; remove it here",
            ),
            SourceKeys::Interval(_) if raw.labels.is_some() => c.problem(
                &key("labels"),
                "only the exporter's [[sources]] and the pusher's [source] take labels",
            ),
            _ => {}
        }
        for (k, message) in label_problems(raw.labels.as_ref()) {
            let mut p = key("labels");
            p.push(Segment::Key(k));
            c.problem(&p, message);
        }
        let url = match (raw.url, url_default) {
            (Some(u), _) => u,
            (None, true) => HttpUrl(DEFAULT_URL.into()),
            (None, false) => {
                c.problem(
                    path,
                    format!("missing key `url`, e.g. url = \"{DEFAULT_URL}\""),
                );
                return None;
            }
        };
        let interval = match keys {
            SourceKeys::Interval(default) | SourceKeys::IntervalAndLabels(default) => {
                raw.interval.map_or(default, |d| d.0)
            }
            SourceKeys::Labels => Duration::ZERO,
        };
        if !matches!(keys, SourceKeys::Labels) && interval < MIN_INTERVAL {
            c.problem(&key("interval"), "must be at least 100ms");
        }
        (c.problems.len() == problems).then(|| PullSource {
            url,
            interval,
            labels: raw.labels.unwrap_or_default(),
            upstream,
        })
    }
}

/// Keys of `labels` that cannot be a label of their own: reserved names
/// (`le` and `quantile` name buckets and quantiles, `__` ones are
/// Prometheus's), empty values (no label to Prometheus), and two keys that
/// become one label name.
fn label_problems(labels: Option<&BTreeMap<String, String>>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for (k, v) in labels.into_iter().flatten() {
        let name = crate::prometheus::names::label_key(k);
        let message = if name == "le" || name == "quantile" || k.starts_with("__") {
            format!("`{k}` is reserved: le and quantile name buckets and quantiles, __ names are Prometheus's")
        } else if v.is_empty() {
            "an empty value is no label to Prometheus; remove the key".to_string()
        } else if let Some(other) = seen.insert(name.clone(), k) {
            format!("`{k}` and `{other}` are both the label `{name}`")
        } else {
            continue;
        };
        out.push((k.clone(), message));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Source;

    fn parse(text: &str, array: bool, keys: SourceKeys) -> Result<Vec<PullSource>, String> {
        let source = Source::from_text(std::path::Path::new("t.toml"), text.into());
        let mut table = source.table().map_err(|e| e.to_string())?;
        let mut c = Checker::new(&source);
        let got = if array {
            PullSource::array(&mut c, &mut table, "sources", keys)
        } else {
            vec![PullSource::section(&mut c, &mut table, "source", keys)]
        };
        c.finish(Some(got)).map_err(|e| e.to_string())
    }

    const TEN: SourceKeys = SourceKeys::Interval(Duration::from_secs(10));

    #[test]
    fn a_single_source_has_defaults() {
        let s = parse("", false, TEN).unwrap();
        assert_eq!(s[0].url.0, DEFAULT_URL);
        assert_eq!(s[0].interval, Duration::from_secs(10));
        let s = parse(
            "[source]\nurl = \"http://a:1\"\ninterval = \"1s\"\n",
            false,
            TEN,
        )
        .unwrap();
        assert_eq!(
            (s[0].url.0.as_str(), s[0].interval),
            ("http://a:1", Duration::from_secs(1))
        );
    }

    #[test]
    fn keys_of_the_other_mode_are_errors_that_say_whose() {
        let e = parse("[source]\nlabels = { a = \"b\" }\n", false, TEN).unwrap_err();
        assert!(
            e.contains("t.toml:2: key `source.labels`: only the exporter"),
            "{e}"
        );
        let e = parse(
            "[[sources]]\nurl = \"http://a:1\"\ninterval = \"1s\"\n",
            true,
            SourceKeys::Labels,
        )
        .unwrap_err();
        assert!(
            e.contains("key `sources[0].interval`: the exporter pulls"),
            "{e}"
        );
        let push = SourceKeys::IntervalAndLabels(Duration::from_secs(10));
        let s = parse("[source]\nlabels = { a = \"b\" }\n", false, push).unwrap();
        assert_eq!(s[0].labels.get("a").map(String::as_str), Some("b"));
        let e = parse(
            "[source]\nlabels = { le = \"1\", x = \"\", \"a-b\" = \"1\", a_b = \"2\" }\n",
            false,
            push,
        )
        .unwrap_err();
        assert!(
            e.contains("key `source.labels.le`: `le` is reserved"),
            "{e}"
        );
        assert!(e.contains("key `source.labels.x`: an empty value"), "{e}");
        assert!(e.contains("are both the label `a_b`"), "{e}");
        let e = parse("[source]\nintervall = \"1s\"\n", false, TEN).unwrap_err();
        assert!(e.contains("source.intervall"), "{e}");
        let e = parse("[source]\ninterval = \"10ms\"\n", false, TEN).unwrap_err();
        assert!(e.contains("at least 100ms"), "{e}");
    }

    #[test]
    fn an_array_needs_urls_each_once() {
        let e = parse("", true, SourceKeys::Labels).unwrap_err();
        assert!(e.contains("no [[sources]]"), "{e}");
        let e = parse("[[sources]]\nlabels = {}\n", true, SourceKeys::Labels).unwrap_err();
        assert!(e.contains("missing key `url`"), "{e}");
        let twice = "[[sources]]\nurl = \"http://a:1\"\n[[sources]]\nurl = \"http://a:1/\"\n";
        let e = parse(twice, true, SourceKeys::Labels).unwrap_err();
        assert!(
            e.contains("sources[1].url") && e.contains("listed twice"),
            "{e}"
        );
        let ok = "[[sources]]\nurl = \"http://a:1\"\nlabels = { dc = \"x\" }\nbearer_token_file = \"/etc/hostname\"\n";
        let s = parse(ok, true, SourceKeys::Labels).unwrap();
        assert_eq!(s[0].labels["dc"], "x");
        assert!(s[0].upstream.bearer_token_file.is_some());
    }
}
