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

/// The consumer table's key of a consumer: `stream.consumer`, or `stream.consumer.domain` for a
/// consumer of a named JetStream domain (the same names in two domains are two consumers).
/// None of the names can hold a dot.
pub fn consumer_key(stream: &str, consumer: &str, domain: Option<&str>) -> String {
    let plain = format!("{stream}.{consumer}");
    match domain {
        Some(d) => key_in_domain(&plain, d),
        None => plain,
    }
}

/// The key of the consumer of names `plain` (a key without domain) in `domain`.
pub fn key_in_domain(plain: &str, domain: &str) -> String {
    format!("{plain}.{domain}")
}

/// `ids` as a lookup table: `true` at each id (ids are small dense integers).
pub fn id_mask(ids: &[u32]) -> Vec<bool> {
    let mut m = vec![false; ids.iter().max().map_or(0, |&i| i as usize + 1)];
    for &i in ids {
        m[i as usize] = true;
    }
    m
}

/// A key's (stream, consumer, domain); `None` unless it has two or three names JetStream allows.
pub fn split_consumer_key(key: &str) -> Option<(&str, &str, Option<&str>)> {
    let mut parts = key.split('.');
    let (stream, consumer, domain) = (parts.next()?, parts.next()?, parts.next());
    let fits = parts.next().is_none()
        && is_jetstream_name(stream)
        && is_jetstream_name(consumer)
        && domain.is_none_or(is_jetstream_name);
    fits.then_some((stream, consumer, domain))
}

/// A held key's names; `?` for what is not one (a free id).
fn parts(key: &str) -> (&str, &str, Option<&str>) {
    split_consumer_key(key).unwrap_or(("?", "?", None))
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

    /// Gives `id` the name `name` instead of its own (which is let go); false when `name` is
    /// taken or `id` is free.
    pub fn rename(&mut self, id: u32, name: &str) -> bool {
        if self.ids.contains_key(name) {
            return false;
        }
        let Some(slot) = self.names.get_mut(id as usize) else {
            return false;
        };
        let Some(old) = slot.replace(name.into()) else {
            *slot = None;
            return false;
        };
        self.ids.remove(&old);
        self.ids.insert(name.into(), id);
        true
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
    /// Keyed by [`consumer_key`].
    consumers: Interner,
    /// `stream.consumer` → the consumer of these names held under a domain (the latest).
    in_a_domain: FxHashMap<Box<str>, ConsumerId>,
    symbols: Interner,
}

impl Names {
    pub fn new(max_consumers: usize, max_symbols: usize) -> Self {
        Self {
            consumers: Interner::new(max_consumers),
            in_a_domain: FxHashMap::default(),
            symbols: Interner::new(max_symbols),
        }
    }

    /// The id of a consumer by its key ([`consumer_key`]), used at `now_ns`.
    pub fn consumer(&mut self, key: &str, now_ns: i64) -> Option<ConsumerId> {
        let known = self.consumers.get(key);
        let id = self.consumers.intern(key, now_ns)?;
        if known.is_none() {
            self.index_domain(id);
        }
        Some(id)
    }

    /// Records consumer `id` as the one of its names held under a domain, when it is.
    fn index_domain(&mut self, id: ConsumerId) {
        if let Some((stream, consumer, Some(_))) =
            self.consumers.name(id).and_then(split_consumer_key)
        {
            let plain = consumer_key(stream, consumer, None);
            self.in_a_domain.insert(plain.into(), id);
        }
    }

    /// Moves consumer `id` (held under no domain) to `domain`: an older server's consumer whose
    /// domain only its events name. False when that key is taken.
    pub fn move_consumer_to_domain(&mut self, id: ConsumerId, domain: &str) -> bool {
        let Some((stream, consumer, None)) = self.consumers.name(id).and_then(split_consumer_key)
        else {
            return false;
        };
        let key = consumer_key(stream, consumer, Some(domain));
        if !self.consumers.rename(id, &key) {
            return false;
        }
        self.index_domain(id);
        true
    }

    /// The consumer held under some domain with the names of `plain` (a key without domain),
    /// for what names none: an older server's ack subjects do not carry the domain its events
    /// name.
    pub fn consumer_in_a_domain(&self, plain: &str) -> Option<ConsumerId> {
        self.in_a_domain.get(plain).copied()
    }

    /// Marks consumer `id` used at `now_ns` (a poll found it).
    pub fn touch_consumer(&mut self, id: ConsumerId, now_ns: i64) {
        self.consumers.touch(id, now_ns);
    }

    /// The id of a consumer already known, by its key ([`consumer_key`]).
    pub fn consumer_id(&self, key: &str) -> Option<ConsumerId> {
        self.consumers.get(key)
    }

    /// The (stream, consumer) names of `id`.
    pub fn consumer_names(&self, id: ConsumerId) -> (&str, &str) {
        let (s, c, _) = self.consumer_full_names(id);
        (s, c)
    }

    /// The (stream, consumer, domain) names of a scope: consumer `id`, or `*`/`*` (no domain)
    /// for all consumers (`None`).
    pub fn scope_names(&self, scope: Option<ConsumerId>) -> (&str, &str, Option<&str>) {
        match scope {
            Some(id) => self.consumer_full_names(id),
            None => ("*", "*", None),
        }
    }

    /// The JetStream domain of consumer `id`, when its acks name one.
    pub fn consumer_domain(&self, id: ConsumerId) -> Option<&str> {
        self.consumer_full_names(id).2
    }

    fn consumer_full_names(&self, id: ConsumerId) -> (&str, &str, Option<&str>) {
        parts(self.consumers.name(id).unwrap_or(""))
    }

    /// The consumers held: id, stream, consumer.
    pub fn consumers(&self) -> impl Iterator<Item = (ConsumerId, &str, &str)> {
        self.consumers.iter().map(|(id, key)| {
            let (s, c, _) = parts(key);
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
        let consumers = self.consumers.forget_unused_since(before_ns);
        if !consumers.is_empty() {
            // Names whose domain consumer went may still have one in another domain.
            self.in_a_domain.clear();
            let held: Vec<ConsumerId> = self.consumers.iter().map(|(id, _)| id).collect();
            for id in held {
                self.index_domain(id);
            }
        }
        Forgotten {
            consumers,
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
    fn a_renamed_name_keeps_its_id() {
        let mut i = Interner::new(3);
        i.intern("a", 1);
        i.intern("b", 1);
        assert!(!i.rename(0, "b"), "taken");
        assert!(!i.rename(2, "c"), "free");
        assert!(i.rename(0, "c"));
        assert_eq!(
            (i.get("a"), i.get("c"), i.name(0)),
            (None, Some(0), Some("c"))
        );
        assert_eq!(i.len(), 2);
    }

    #[test]
    fn consumer_keys_hold_the_domain() {
        assert_eq!(consumer_key("GAME", "srv-1", None), "GAME.srv-1");
        assert_eq!(consumer_key("GAME", "srv-1", Some("hub")), "GAME.srv-1.hub");
        assert_eq!(
            split_consumer_key("GAME.srv-1.hub"),
            Some(("GAME", "srv-1", Some("hub")))
        );
        assert_eq!(
            split_consumer_key("GAME.srv-1"),
            Some(("GAME", "srv-1", None))
        );
        for bad in ["GAME", "GAME.srv-1.hub.x", "GAME..x", "GAME.a b", ""] {
            assert_eq!(split_consumer_key(bad), None, "{bad:?}");
        }
        let mut n = Names::new(10, 10);
        let (a, b) = (
            n.consumer("GAME.srv-1", 1).unwrap(),
            n.consumer("GAME.srv-1.leaf", 1).unwrap(),
        );
        assert_ne!(a, b);
        assert_eq!(n.consumer_names(b), ("GAME", "srv-1"));
        assert_eq!(
            (n.consumer_domain(a), n.consumer_domain(b)),
            (None, Some("leaf"))
        );
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
