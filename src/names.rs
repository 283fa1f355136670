//! Bounded string interning: streams/consumers and symbols (message subjects, label values).
//!
//! Samples carry small integer ids instead of strings, so the hot path never allocates for a
//! name it has seen. Both tables have a fixed capacity; a name that does not fit is refused and
//! counted by the caller, never stored. Names not used for a while are forgotten
//! ([`Names::forget_unused_since`]) and their ids given to new names: the caller rewrites what
//! still holds a forgotten id first.

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

/// A bounded string → id table whose ids of forgotten names are used again.
#[derive(Debug, Clone)]
pub struct Interner {
    ids: FxHashMap<Box<str>, u32>,
    /// By id; `None` for a free slot.
    names: Vec<Option<Box<str>>>,
    /// By id: when the name was last used, Unix ns.
    last_used_ns: Vec<i64>,
    free: Vec<u32>,
    capacity: usize,
}

impl Interner {
    pub fn new(capacity: usize) -> Self {
        Self {
            ids: FxHashMap::default(),
            names: Vec::new(),
            last_used_ns: Vec::new(),
            free: Vec::new(),
            capacity,
        }
    }

    /// The id of `name`, inserting it if there is room, and marks it used at `now_ns`; `None`
    /// when the table is full.
    pub fn intern(&mut self, name: &str, now_ns: i64) -> Option<u32> {
        if let Some(&id) = self.ids.get(name) {
            self.touch(id, now_ns);
            return Some(id);
        }
        let id = match self.free.pop() {
            Some(id) => id,
            None if self.names.len() < self.capacity => {
                self.names.push(None);
                self.last_used_ns.push(now_ns);
                (self.names.len() - 1) as u32
            }
            None => return None,
        };
        self.ids.insert(name.into(), id);
        self.names[id as usize] = Some(name.into());
        self.last_used_ns[id as usize] = now_ns;
        Some(id)
    }

    /// Marks `id` used at `now_ns`.
    pub fn touch(&mut self, id: u32, now_ns: i64) {
        if let Some(t) = self.last_used_ns.get_mut(id as usize) {
            *t = (*t).max(now_ns);
        }
    }

    pub fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    pub fn name(&self, id: u32) -> Option<&str> {
        self.names.get(id as usize)?.as_deref()
    }

    /// Names held.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Every id is below this.
    pub fn slots(&self) -> usize {
        self.names.len()
    }

    /// The names held, by id.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &str)> {
        self.names
            .iter()
            .enumerate()
            .filter_map(|(id, n)| Some((id as u32, n.as_deref()?)))
    }

    /// Forgets every name last used before `before_ns`; returns their ids, which new names
    /// may take from now on.
    pub fn forget_unused_since(&mut self, before_ns: i64) -> Vec<u32> {
        let mut forgotten = Vec::new();
        for (id, name) in self.names.iter_mut().enumerate() {
            if self.last_used_ns[id] < before_ns
                && let Some(name) = name.take()
            {
                self.ids.remove(&name);
                forgotten.push(id as u32);
            }
        }
        self.free.extend(forgotten.iter().rev());
        forgotten
    }
}

/// What [`Names::forget_unused_since`] let go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forgotten {
    pub consumers: Vec<ConsumerId>,
    pub symbols: Vec<u32>,
}

impl Forgotten {
    pub fn is_empty(&self) -> bool {
        self.consumers.is_empty() && self.symbols.is_empty()
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

    /// The id of the `stream.consumer` pair, as found in an ack subject, used at `now_ns`.
    pub fn consumer(&mut self, stream_consumer: &str, now_ns: i64) -> Option<ConsumerId> {
        self.consumers.intern(stream_consumer, now_ns)
    }

    /// Marks consumer `id` used at `now_ns` (a poll found it).
    pub fn touch_consumer(&mut self, id: ConsumerId, now_ns: i64) {
        self.consumers.touch(id, now_ns);
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

    /// The consumers held: id, stream, consumer.
    pub fn consumers(&self) -> impl Iterator<Item = (ConsumerId, &str, &str)> {
        self.consumers.iter().map(|(id, key)| {
            let (s, c) = key.split_once('.').unwrap_or((key, ""));
            (id, s, c)
        })
    }

    /// Consumers held.
    pub fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    /// Every consumer id is below this.
    pub fn consumer_slots(&self) -> usize {
        self.consumers.slots()
    }

    /// The symbol for `s`, used at `now_ns`; `None` when the table is full.
    pub fn symbol(&mut self, s: &str, now_ns: i64) -> Option<Sym> {
        self.symbols.intern(s, now_ns).map(Sym)
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

    /// Forgets the consumers and symbols last used before `before_ns`.
    pub fn forget_unused_since(&mut self, before_ns: i64) -> Forgotten {
        Forgotten {
            consumers: self.consumers.forget_unused_since(before_ns),
            symbols: self.symbols.forget_unused_since(before_ns),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_bounded_and_stable() {
        let mut i = Interner::new(2);
        assert_eq!(i.intern("a", 1), Some(0));
        assert_eq!(i.intern("b", 1), Some(1));
        assert_eq!(i.intern("a", 1), Some(0));
        assert_eq!(i.intern("c", 1), None);
        assert_eq!(i.len(), 2);
        assert_eq!(i.name(1), Some("b"));
    }

    #[test]
    fn names_unused_for_a_while_give_their_ids_to_new_ones() {
        let mut i = Interner::new(3);
        for (name, t) in [("a", 10), ("b", 20), ("c", 30)] {
            i.intern(name, t);
        }
        // `a` used again: only `b` is older than 25 now.
        i.intern("a", 40);
        assert_eq!(i.intern("d", 41), None, "full");
        assert_eq!(i.forget_unused_since(25), vec![1]);
        assert_eq!((i.get("b"), i.name(1), i.len()), (None, None, 2));
        assert_eq!(i.intern("d", 42), Some(1), "the forgotten id is used again");
        assert_eq!(i.name(1), Some("d"));
        assert_eq!(i.slots(), 3);
        let held: Vec<(u32, &str)> = i.iter().collect();
        assert_eq!(held, vec![(0, "a"), (1, "d"), (2, "c")]);
        // A touch keeps a name; nothing is forgotten twice.
        i.touch(2, 50);
        assert_eq!(i.forget_unused_since(45), vec![0, 1]);
        assert_eq!(i.forget_unused_since(45), Vec::<u32>::new());
        assert!(i.get("c").is_some());
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
        let id = n.consumer("GAME.srv-1", 1).unwrap();
        assert_eq!(n.consumer_names(id), ("GAME", "srv-1"));
        assert_eq!(n.consumer("GAME.srv-1", 2), Some(id));
        let held: Vec<_> = n.consumers().collect();
        assert_eq!(held, vec![(id, "GAME", "srv-1")]);
        assert_eq!(n.consumer_count(), 1);
    }
}
