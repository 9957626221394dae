//! Series keyed by something that comes and goes: a disk, an interface, a
//! mount, later a cgroup or a process group.

use std::collections::HashMap;

/// What a sampler keeps per key (its series, typically). Each refresh is a
/// pass: `begin`, `get` every key the source lists, `finish`. A key the
/// source no longer lists is dropped at `finish`, and with it its series,
/// which then vanish from the exposition. Whether a key is wanted is
/// decided once, when it first appears (`make` returning `None` excludes
/// it, cheaply, for as long as it stays).
pub struct Keyed<V> {
    entries: HashMap<String, Entry<V>>,
    pass: u64,
}

struct Entry<V> {
    value: Option<V>,
    seen: u64,
}

impl<V> Default for Keyed<V> {
    fn default() -> Self {
        Keyed {
            entries: HashMap::new(),
            pass: 0,
        }
    }
}

impl<V> Keyed<V> {
    /// Starts a pass over the source.
    pub fn begin(&mut self) {
        self.pass += 1;
    }

    /// The value of `key`, made by `make` when the key is new; `None` when
    /// the key is excluded. Marks the key as present in this pass.
    pub fn get(&mut self, key: &str, make: impl FnOnce() -> Option<V>) -> Option<&mut V> {
        let pass = self.pass;
        // Look up by &str first: allocating the key only for new entries.
        if !self.entries.contains_key(key) {
            let value = make();
            self.entries
                .insert(key.to_string(), Entry { value, seen: pass });
        }
        let entry = self.entries.get_mut(key).expect("inserted above");
        entry.seen = pass;
        entry.value.as_mut()
    }

    /// Ends the pass: keys not seen in it are dropped.
    pub fn finish(&mut self) {
        self.finish_with(|_| {});
    }

    /// `finish`, handing each dropped value (None: an excluded key) to
    /// `gone`, for what must be undone with it.
    pub fn finish_with(&mut self, mut gone: impl FnMut(Option<V>)) {
        let pass = self.pass;
        let dropped: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.seen != pass)
            .map(|(k, _)| k.clone())
            .collect();
        for k in dropped {
            if let Some(e) = self.entries.remove(&k) {
                gone(e.value);
            }
        }
    }

    /// Whether `key` is tracked (wanted or excluded).
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// The wanted values.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.entries.values_mut().filter_map(|e| e.value.as_mut())
    }

    /// Keys tracked (wanted or excluded).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::Keyed;

    #[test]
    fn keys_that_vanish_are_dropped_and_exclusion_is_decided_once() {
        let mut k: Keyed<u32> = Keyed::default();
        let mut made = 0;
        for pass in 0..3 {
            k.begin();
            for key in ["sda", "loop0"] {
                let v = k.get(key, || {
                    made += 1;
                    (key != "loop0").then_some(7)
                });
                assert_eq!(v.is_some(), key == "sda");
            }
            if pass < 2 {
                k.get("sdb", || Some(1));
            }
            k.finish();
        }
        assert_eq!(made, 2, "sda and loop0 were decided once");
        assert_eq!(k.len(), 2, "sdb vanished");
    }
}
