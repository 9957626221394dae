//! TOML configuration machinery shared by every mode: loading, errors that
//! name the file, the key and the line (every problem in a file at once),
//! and the value types configs are written in. Each mode's own config
//! struct lives with its mode.

mod values;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

pub use values::{ByteSize, Cidr, HttpUrl, HumanDuration, Listen, ListenAddr, LogConfig, LogLevel};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Dotted key path, e.g. `samplers.cpu.enabled`; empty for the file.
    pub key: String,
    /// 1-based line, when the key (or its table) exists in the file.
    pub line: Option<usize>,
    pub message: String,
}

/// Every problem found in one file.
#[derive(Debug)]
pub struct ConfigError {
    pub path: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.path.display())?;
            if let Some(line) = p.line {
                write!(f, ":{line}")?;
            }
            if p.key.is_empty() {
                write!(f, ": {}", p.message)?;
            } else {
                write!(f, ": key `{}`: {}", p.key, p.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The text of a config file with what is needed to point at its lines.
pub struct Source {
    pub path: PathBuf,
    text: String,
    doc: Option<toml_edit::ImDocument<String>>,
}

impl Source {
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_path_buf(),
            problems: vec![Problem {
                key: String::new(),
                line: None,
                message: format!("cannot read the file: {e}"),
            }],
        })?;
        Ok(Self::from_text(path, text))
    }

    pub fn from_text(path: &Path, text: String) -> Self {
        let doc = toml_edit::ImDocument::parse(text.clone()).ok();
        Source {
            path: path.to_path_buf(),
            text,
            doc,
        }
    }

    /// Parses the TOML syntax; a syntax error is the one problem reported.
    pub fn table(&self) -> Result<toml::Table, ConfigError> {
        toml::from_str::<toml::Table>(&self.text).map_err(|e| {
            let line = e.span().map(|s| self.line_of(s.start));
            self.error(vec![Problem {
                key: String::new(),
                line,
                message: format!("invalid TOML: {}", clean_message(e.message())),
            }])
        })
    }

    pub fn error(&self, problems: Vec<Problem>) -> ConfigError {
        ConfigError {
            path: self.path.clone(),
            problems,
        }
    }

    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1
    }

    /// The line of the deepest part of `path` present in the file.
    pub fn line(&self, path: &[Segment]) -> Option<usize> {
        use toml_edit::{Item, TableLike, Value};
        let doc = self.doc.as_ref()?;
        let mut table: Option<&dyn TableLike> = Some(doc.as_table());
        let mut item: Option<&Item> = None;
        let mut span = None;
        for seg in path {
            match seg {
                Segment::Key(k) => {
                    let Some((key, it)) = table.and_then(|t| t.get_key_value(k)) else {
                        break;
                    };
                    span = key.span().or_else(|| it.span()).or(span);
                    item = Some(it);
                    table = it.as_table_like();
                }
                Segment::Index(i) => match item {
                    Some(Item::ArrayOfTables(a)) => {
                        let Some(t) = a.get(*i) else { break };
                        span = t.span().or(span);
                        item = None;
                        table = Some(t);
                    }
                    Some(Item::Value(Value::Array(a))) => {
                        let Some(v) = a.get(*i) else { break };
                        span = v.span().or(span);
                        item = None;
                        table = v.as_inline_table().map(|t| t as &dyn TableLike);
                    }
                    _ => break,
                },
            }
        }
        span.map(|s| self.line_of(s.start))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

pub fn dotted(path: &[Segment]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Segment::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Segment::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Collects problems for one file; `Checker::finish` yields them all.
pub struct Checker<'a> {
    pub source: &'a Source,
    pub problems: Vec<Problem>,
}

impl<'a> Checker<'a> {
    pub fn new(source: &'a Source) -> Self {
        Checker {
            source,
            problems: Vec::new(),
        }
    }

    pub fn problem(&mut self, path: &[Segment], message: impl Into<String>) {
        self.problems.push(Problem {
            key: dotted(path),
            line: self.source.line(path),
            message: message.into(),
        });
    }

    /// Deserializes `value` (found at `prefix`) into `T`. On an error the
    /// offending key is recorded and removed and deserialization is tried
    /// again, so one pass reports every bad key, not just the first.
    pub fn deserialize<T: DeserializeOwned>(
        &mut self,
        prefix: &[Segment],
        mut value: toml::Value,
    ) -> Option<T> {
        let mut failed = false;
        // Each retry removes a key, so this ends; the bound is a backstop.
        for _ in 0..1000 {
            match serde_path_to_error::deserialize::<_, T>(value.clone()) {
                Ok(t) => return (!failed).then_some(t),
                Err(e) => {
                    failed = true;
                    let mut path = prefix.to_vec();
                    path.extend(e.path().iter().filter_map(|s| match s {
                        serde_path_to_error::Segment::Map { key } => {
                            Some(Segment::Key(key.clone()))
                        }
                        serde_path_to_error::Segment::Seq { index } => Some(Segment::Index(*index)),
                        _ => None,
                    }));
                    let message = clean_message(&e.inner().to_string());
                    let rel = &path[prefix.len()..];
                    self.problem(&path, message);
                    if rel.is_empty() || !remove(&mut value, rel) {
                        return None;
                    }
                }
            }
        }
        None
    }

    pub fn finish<T>(self, value: Option<T>) -> Result<T, ConfigError> {
        match value {
            Some(v) if self.problems.is_empty() => Ok(v),
            _ => {
                let mut problems = self.problems;
                problems.sort_by_key(|p| p.line.unwrap_or(0));
                if problems.is_empty() {
                    problems.push(Problem {
                        key: String::new(),
                        line: None,
                        message: "invalid configuration".into(),
                    });
                }
                Err(self.source.error(problems))
            }
        }
    }
}

/// toml's messages carry a trailing newline and sometimes a location we
/// already print ourselves.
fn clean_message(m: &str) -> String {
    let m = m.trim().replace('\n', " ");
    // toml appends ` in `key``, which the printed key path already says.
    match m.rfind(" in `") {
        Some(i) if m.ends_with('`') => m[..i].to_string(),
        _ => m,
    }
}

/// Removes the value at `path` inside `value`; false when it is not there.
fn remove(value: &mut toml::Value, path: &[Segment]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut v = value;
    for seg in parents {
        v = match (seg, v) {
            (Segment::Key(k), toml::Value::Table(t)) => match t.get_mut(k) {
                Some(v) => v,
                None => return false,
            },
            (Segment::Index(i), toml::Value::Array(a)) => match a.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, v) {
        (Segment::Key(k), toml::Value::Table(t)) => t.remove(k).is_some(),
        (Segment::Index(i), toml::Value::Array(a)) if *i < a.len() => {
            a.remove(*i);
            true
        }
        _ => false,
    }
}

/// Reports top-level tables that `known` does not list.
pub fn check_sections(c: &mut Checker<'_>, table: &toml::Table, known: &[&str]) {
    for key in table.keys() {
        if !known.contains(&key.as_str()) {
            c.problem(
                &[Segment::Key(key.clone())],
                format!(
                    "unknown section or key `{key}`, expected one of: {}",
                    known.join(", ")
                ),
            );
        }
    }
}

/// Takes section `name` out of `table` (an empty table when absent) and
/// deserializes it, recording problems.
pub fn section<T: DeserializeOwned + Default>(
    c: &mut Checker<'_>,
    table: &mut toml::Table,
    name: &str,
) -> T {
    let value = table
        .remove(name)
        .unwrap_or_else(|| toml::Value::Table(Default::default()));
    c.deserialize(&[Segment::Key(name.to_string())], value)
        .unwrap_or_default()
}

/// Takes the `[listen]` section out of `table`: every mode's listen keys,
/// with `address` defaulting to the mode's `default`. What the named files
/// hold is checked by `serve::check_listen`.
pub fn listen_section(c: &mut Checker<'_>, table: &mut toml::Table, default: &str) -> Listen {
    #[derive(Default, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Keys {
        address: Option<ListenAddr>,
        tls_cert_file: Option<PathBuf>,
        tls_key_file: Option<PathBuf>,
        tls_client_ca_file: Option<PathBuf>,
        #[serde(default)]
        basic_auth_users: std::collections::BTreeMap<String, String>,
        bearer_token_file: Option<PathBuf>,
        #[serde(default)]
        allow: Vec<Cidr>,
        web_config_file: Option<PathBuf>,
        header_timeout: Option<HumanDuration>,
        idle_timeout: Option<HumanDuration>,
        max_connections: Option<usize>,
    }
    let keys: Keys = section(c, table, "listen");
    let mut listen = Listen::on(default);
    if let Some(a) = keys.address {
        listen.address = a;
    }
    let key = |k: &str| [Segment::Key("listen".into()), Segment::Key(k.into())];
    if keys.tls_cert_file.is_some() != keys.tls_key_file.is_some() {
        let missing = if keys.tls_cert_file.is_some() {
            "tls_key_file"
        } else {
            "tls_cert_file"
        };
        c.problem(
            &key(missing),
            "tls_cert_file and tls_key_file go together: set both for https, or neither",
        );
    }
    if keys.tls_client_ca_file.is_some() && keys.tls_cert_file.is_none() {
        c.problem(
            &key("tls_client_ca_file"),
            "client certificates need https: set tls_cert_file and tls_key_file too",
        );
    }
    let inline = keys.tls_cert_file.is_some() || !keys.basic_auth_users.is_empty();
    if keys.web_config_file.is_some() && inline {
        c.problem(
            &key("web_config_file"),
            "use either web_config_file or the inline tls_*/basic_auth_users keys, not both",
        );
    }
    if let Some(n) = keys.max_connections {
        if n == 0 || n > 65536 {
            c.problem(
                &key("max_connections"),
                format!("{n} is out of range: 1 to 65536"),
            );
        } else {
            listen.max_connections = n;
        }
    }
    listen.tls_cert_file = keys.tls_cert_file;
    listen.tls_key_file = keys.tls_key_file;
    listen.tls_client_ca_file = keys.tls_client_ca_file;
    listen.basic_auth_users = keys.basic_auth_users;
    listen.bearer_token_file = keys.bearer_token_file;
    listen.allow = keys.allow;
    listen.web_config_file = keys.web_config_file;
    if let Some(t) = keys.header_timeout {
        listen.header_timeout = t.0;
    }
    if let Some(t) = keys.idle_timeout {
        listen.idle_timeout = t.0;
    }
    listen
}
