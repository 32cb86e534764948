//! A table of keys with reference counts, addressed by small integer ids.
//!
//! The index refers to a storage (three strings) from each of hundreds of thousands of
//! backups; a `u32` id instead of the strings keeps each backup's entry small. An entry lives
//! while anything refers to it and its id is reused after, so the table stays bounded by what
//! the cluster holds now, not by everything it ever held. The live ids are also kept in key
//! order, updated only when an entry comes or goes, so a scrape reads them sorted without
//! sorting.

use std::collections::HashMap;
use std::hash::Hash;

/// The id of an entry in a [`RefTable`].
pub type Id = u32;

#[derive(Debug)]
struct Entry<K, V> {
    key: K,
    value: V,
    refs: u32,
}

/// Keys with a value each, kept while referenced.
#[derive(Debug)]
pub struct RefTable<K, V> {
    ids: HashMap<K, Id>,
    entries: Vec<Option<Entry<K, V>>>,
    free: Vec<Id>,
    sorted: Vec<Id>,
}

impl<K, V> Default for RefTable<K, V> {
    fn default() -> Self {
        Self {
            ids: HashMap::new(),
            entries: Vec::new(),
            free: Vec::new(),
            sorted: Vec::new(),
        }
    }
}

impl<K: Hash + Ord + Clone, V: Default> RefTable<K, V> {
    /// The id of `key`, adding it (with a default value) when new; counts one more reference.
    pub fn acquire(&mut self, key: K) -> Id {
        if let Some(&id) = self.ids.get(&key) {
            if let Some(entry) = self.slot_mut(id) {
                entry.refs += 1;
            }
            return id;
        }
        let entry = Entry {
            key: key.clone(),
            value: V::default(),
            refs: 1,
        };
        let id = match self.free.pop() {
            Some(id) => {
                if let Some(slot) = self.entries.get_mut(id as usize) {
                    *slot = Some(entry);
                }
                id
            }
            None => {
                // More than 4 billion live keys cannot be held in memory anyway.
                let id = Id::try_from(self.entries.len()).unwrap_or(Id::MAX);
                self.entries.push(Some(entry));
                id
            }
        };
        let at = self.position(&key).unwrap_or_else(|at| at);
        self.sorted.insert(at, id);
        self.ids.insert(key, id);
        id
    }

    /// Where `key` is (`Ok`) or would go (`Err`) in the sorted ids.
    fn position(&self, key: &K) -> Result<usize, usize> {
        self.sorted.binary_search_by(|&id| match self.key(id) {
            Some(k) => k.cmp(key),
            None => std::cmp::Ordering::Less,
        })
    }

    /// Drops one reference to `id`; the entry (key and value) goes with the last one.
    pub fn release(&mut self, id: Id) {
        let Some(entry) = self.slot_mut(id) else {
            return;
        };
        entry.refs -= 1;
        if entry.refs == 0
            && let Some(entry) = self.entries.get_mut(id as usize).and_then(Option::take)
        {
            self.ids.remove(&entry.key);
            if let Some(at) = self.sorted.iter().position(|&i| i == id) {
                self.sorted.remove(at);
            }
            self.free.push(id);
        }
    }

    /// The value of a live entry.
    pub fn value_mut(&mut self, id: Id) -> Option<&mut V> {
        self.slot_mut(id).map(|e| &mut e.value)
    }

    /// The key of a live entry.
    pub fn key(&self, id: Id) -> Option<&K> {
        self.entries
            .get(id as usize)
            .and_then(Option::as_ref)
            .map(|e| &e.key)
    }

    /// Every live entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (Id, &K, &V)> {
        self.sorted.iter().filter_map(|&id| {
            self.entries
                .get(id as usize)
                .and_then(Option::as_ref)
                .map(|e| (id, &e.key, &e.value))
        })
    }

    /// How many entries are live.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no entry is live.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn slot_mut(&mut self, id: Id) -> Option<&mut Entry<K, V>> {
        self.entries.get_mut(id as usize).and_then(Option::as_mut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_lives_while_referenced_and_its_id_is_reused() {
        let mut table: RefTable<String, u64> = RefTable::default();
        let a = table.acquire("a".into());
        assert_eq!(table.acquire("a".into()), a, "one key, one id");
        *table.value_mut(a).unwrap() += 5;
        table.release(a);
        assert_eq!(
            table.key(a).map(String::as_str),
            Some("a"),
            "one reference left"
        );
        assert_eq!(table.value_mut(a).copied(), Some(5));
        table.release(a);
        assert!(table.is_empty() && table.key(a).is_none());

        let b = table.acquire("b".into());
        assert_eq!(b, a, "the freed id is reused");
        assert_eq!(table.value_mut(b).copied(), Some(0), "with a fresh value");
        assert_eq!(
            table.iter().map(|(_, k, _)| k.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
        for key in ["d", "a", "c", "e"] {
            table.acquire(key.into());
        }
        let c = table.acquire("c".into());
        table.release(c);
        table.release(c);
        assert_eq!(
            table.iter().map(|(_, k, _)| k.as_str()).collect::<Vec<_>>(),
            ["a", "b", "d", "e"],
            "kept in key order through comings and goings"
        );
        for key in ["a", "d", "e"] {
            let id = table.acquire(key.into());
            table.release(id);
            table.release(id);
        }
        table.release(b);
        table.release(b); // a stray release of a freed id changes nothing
        assert_eq!(table.len(), 0);
    }
}
