//! Bounded string interning: streams/consumers and symbols (message subjects, label values).
//!
//! Samples carry small integer ids instead of strings, so the hot path never allocates for a
//! name it has seen. Both tables have a fixed capacity; a name that does not fit is refused and
//! counted by the caller, never stored.

use rustc_hash::FxHashMap;

use crate::model::{ConsumerId, Sym};

/// Longest stream or consumer name JetStream allows.
pub const MAX_NAME_BYTES: usize = 255;

/// Whether `s` can name a JetStream stream or consumer: 1 to 255 bytes, no `.`, wildcards,
/// white space or path separators. Names from a message, a config file or a query are all held
/// to this one rule.
pub fn is_jetstream_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_BYTES
        && !s.contains(|c: char| c.is_whitespace() || ".*>/\\".contains(c))
}

/// A bounded string → id table.
#[derive(Debug, Clone)]
pub struct Interner {
    ids: FxHashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
    capacity: usize,
}

impl Interner {
    pub fn new(capacity: usize) -> Self {
        Self {
            ids: FxHashMap::default(),
            names: Vec::new(),
            capacity,
        }
    }

    /// The id of `name`, inserting it if there is room; `None` when the table is full.
    pub fn intern(&mut self, name: &str) -> Option<u32> {
        if let Some(&id) = self.ids.get(name) {
            return Some(id);
        }
        if self.names.len() >= self.capacity {
            return None;
        }
        let id = self.names.len() as u32;
        self.ids.insert(name.into(), id);
        self.names.push(name.into());
        Some(id)
    }

    pub fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    pub fn name(&self, id: u32) -> Option<&str> {
        self.names.get(id as usize).map(|n| &**n)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// The names a pipeline has seen.
#[derive(Debug, Clone)]
pub struct Names {
    /// Keyed by `stream.consumer` (neither name may contain a dot).
    consumers: Interner,
    symbols: Interner,
}

impl Names {
    pub fn new(max_consumers: usize, max_symbols: usize) -> Self {
        Self {
            consumers: Interner::new(max_consumers),
            symbols: Interner::new(max_symbols),
        }
    }

    /// The id of the `stream.consumer` pair, as found in an ack subject.
    pub fn consumer(&mut self, stream_consumer: &str) -> Option<ConsumerId> {
        self.consumers.intern(stream_consumer)
    }

    /// The id of a `stream.consumer` pair already known.
    pub fn consumer_id(&self, stream_consumer: &str) -> Option<ConsumerId> {
        self.consumers.get(stream_consumer)
    }

    /// The (stream, consumer) names of `id`.
    pub fn consumer_names(&self, id: ConsumerId) -> (&str, &str) {
        let key = self.consumers.name(id).unwrap_or("?.?");
        key.split_once('.').unwrap_or((key, ""))
    }

    pub fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    /// The symbol for `s`, or [`Sym::NONE`] when the table is full.
    pub fn symbol(&mut self, s: &str) -> Option<Sym> {
        self.symbols.intern(s).map(Sym)
    }

    pub fn symbol_count(&self) -> usize {
        self.symbols.len()
    }

    pub fn symbol_name(&self, sym: Sym) -> Option<&str> {
        if sym.is_none() {
            None
        } else {
            self.symbols.name(sym.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_bounded_and_stable() {
        let mut i = Interner::new(2);
        assert_eq!(i.intern("a"), Some(0));
        assert_eq!(i.intern("b"), Some(1));
        assert_eq!(i.intern("a"), Some(0));
        assert_eq!(i.intern("c"), None);
        assert_eq!(i.len(), 2);
        assert_eq!(i.name(1), Some("b"));
    }

    #[test]
    fn jetstream_names() {
        for good in [
            "GAME",
            "srv-1",
            "KV_settings",
            "a_b-C9",
            &"n".repeat(MAX_NAME_BYTES),
        ] {
            assert!(is_jetstream_name(good), "{good}");
        }
        for bad in [
            "",
            "a.b",
            "a*",
            ">",
            "a b",
            "a\tb",
            "a/b",
            "a\\b",
            &"n".repeat(MAX_NAME_BYTES + 1),
        ] {
            assert!(!is_jetstream_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn consumer_names_split() {
        let mut n = Names::new(10, 10);
        let id = n.consumer("GAME.srv-1").unwrap();
        assert_eq!(n.consumer_names(id), ("GAME", "srv-1"));
        assert_eq!(n.consumer("GAME.srv-1"), Some(id));
        assert_eq!(n.consumer_count(), 1);
    }
}
