//! Config files edited by key path (with toml_edit), for tests that run a
//! mode on a variant of config/<mode>.toml.

use toml_edit::{DocumentMut, Item, Value};

/// A config file's text, edited by key path. Every edit names a key that
/// must already exist in the file: a key renamed or removed in config/*.toml
/// fails the test with its name, instead of an edit that silently does nothing.
///
/// Paths are dotted table and key names (`samplers.syscall.latency`,
/// `listen.address`); `[i]` picks an element of an array of tables
/// (`sinks[0].url`).
pub struct Config {
    doc: DocumentMut,
    /// The file's name, for messages.
    what: String,
}

impl Config {
    /// `text` as a config; `what` names it in messages. Panics on bad TOML.
    pub fn parse(what: &str, text: &str) -> Config {
        let doc = text
            .parse::<DocumentMut>()
            .unwrap_or_else(|e| panic!("{what}: not TOML: {e}"));
        Config {
            doc,
            what: what.to_string(),
        }
    }

    /// config/<name>.toml of the repo, e.g. `Config::repo("agent")`.
    pub fn repo(name: &str) -> Config {
        let what = format!("config/{name}.toml");
        let path = super::repo().join(&what);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Config::parse(&what, &text)
    }

    /// Sets the existing key at `path` to `value`, keeping the line's
    /// comment and spacing. Panics "<file>: no key `<path>`" when the file
    /// does not have it (use [`Config::add`] for a key it leaves out).
    pub fn set(mut self, path: &str, value: impl Into<Value>) -> Config {
        let Some(item) = walk_mut(self.doc.as_item_mut(), path) else {
            panic!("{}: no key `{path}`", self.what)
        };
        let Some(old) = item.as_value_mut() else {
            panic!("{}: `{path}` is a table, not a value", self.what)
        };
        let mut new: Value = value.into();
        *new.decor_mut() = old.decor().clone();
        *old = new;
        self
    }

    /// Adds `path`, a key the file does not have (commented out, or not
    /// shown), to a table the file has: e.g. `listen.allow`, or a
    /// misspelt key a test wants refused. Panics when the table is missing
    /// or already has the key (use [`Config::set`]).
    pub fn add(mut self, path: &str, value: impl Into<Value>) -> Config {
        let (parent, key) = path.rsplit_once('.').unwrap_or(("", path));
        let what = &self.what;
        let table = walk_mut(self.doc.as_item_mut(), parent).and_then(|i| i.as_table_like_mut());
        let Some(table) = table else {
            panic!("{what}: no table `{parent}` to add `{key}` to")
        };
        assert!(
            !table.contains_key(key),
            "{what}: `{path}` is already there (use `set`)"
        );
        table.insert(key, Item::Value(value.into()));
        self
    }

    /// The value at `path`, if the file has that key.
    pub fn get(&self, path: &str) -> Option<&Value> {
        walk(self.doc.as_item(), path)?.as_value()
    }

    /// The names of the tables in the table at `path`, in file order (e.g.
    /// every sampler's section under `samplers`). Panics when there is no
    /// such table.
    pub fn tables(&self, path: &str) -> Vec<String> {
        let Some(table) = walk(self.doc.as_item(), path).and_then(|i| i.as_table_like()) else {
            panic!("{}: no table `{path}`", self.what)
        };
        table
            .iter()
            .filter(|(_, item)| item.is_table())
            .map(|(name, _)| name.to_string())
            .collect()
    }

    /// The edited file's text.
    pub fn text(&self) -> String {
        self.doc.to_string()
    }
}

/// A TOML array of strings, e.g. for `include` or `disable`.
pub fn array<S: AsRef<str>>(items: &[S]) -> Value {
    Value::Array(items.iter().map(|s| s.as_ref()).collect())
}

/// A TOML value written out, e.g. an array of inline tables. Panics on bad
/// TOML.
pub fn value(toml: &str) -> Value {
    toml.parse()
        .unwrap_or_else(|e| panic!("not a TOML value: {toml}: {e}"))
}

/// One path segment: a name, and an index when it picks an array element.
fn segment(seg: &str) -> (&str, Option<usize>) {
    match seg.strip_suffix(']').and_then(|s| s.split_once('[')) {
        Some((name, i)) => {
            let i = i
                .parse()
                .unwrap_or_else(|_| panic!("bad index in key path segment `{seg}`"));
            (name, Some(i))
        }
        None => (seg, None),
    }
}

/// The item at `path` under `item` ("" is `item` itself); never creates one.
fn walk<'a>(mut item: &'a Item, path: &str) -> Option<&'a Item> {
    if path.is_empty() {
        return Some(item);
    }
    for seg in path.split('.') {
        let (name, index) = segment(seg);
        item = item.as_table_like()?.get(name)?;
        if let Some(i) = index {
            item = item.get(i)?;
        }
    }
    Some(item)
}

/// [`walk`], for editing.
fn walk_mut<'a>(mut item: &'a mut Item, path: &str) -> Option<&'a mut Item> {
    if path.is_empty() {
        return Some(item);
    }
    for seg in path.split('.') {
        let (name, index) = segment(seg);
        item = item.as_table_like_mut()?.get_mut(name)?;
        if let Some(i) = index {
            item = item.get_mut(i)?;
        }
    }
    Some(item)
}
