//! Compact identities for watched objects.
//!
//! The index holds an entry per backup (hundreds of thousands) and needs a backup's name
//! only to find that entry again: on a change, a deletion, or a relist. So instead of the
//! name it keeps a 128-bit keyed hash of `(namespace, name)`: 16 bytes, no allocation. The
//! keys are random per process (SipHash-1-3 under [`RandomState`]), so names cannot be
//! chosen to collide, and two of 300,000 names collide by chance with probability about
//! 10⁻²⁸: far below any hardware fault rate.

use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};

/// The identity of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectId(u64, u64);

impl Hash for ObjectId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Already a keyed hash: one word of it is as good as hashing it again.
        state.write_u64(self.0);
    }
}

/// Makes [`ObjectId`]s: two independently keyed hashes of the same name.
#[derive(Debug, Clone, Default)]
pub struct ObjectIds {
    high: RandomState,
    low: RandomState,
}

impl ObjectIds {
    /// The id of `namespace/name`.
    pub fn of(&self, namespace: &str, name: &str) -> ObjectId {
        ObjectId(
            self.high.hash_one((namespace, name)),
            self.low.hash_one((namespace, name)),
        )
    }
}

/// A hasher that passes an [`ObjectId`]'s word through, for maps keyed by ids.
#[derive(Debug, Default)]
pub struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `ObjectId`; fold anything else in so it still works.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The map hasher for [`ObjectId`] keys.
pub type IdHasher = BuildHasherDefault<PassThrough>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_per_name_and_distinct_across_names() {
        let ids = ObjectIds::default();
        assert_eq!(ids.of("ns", "a"), ids.of("ns", "a"));
        assert_ne!(ids.of("ns", "a"), ids.of("ns", "b"));
        // The pair is hashed with its boundary: moving a character across it is another id.
        assert_ne!(ids.of("ns1", "a"), ids.of("ns", "1a"));
        let other = ObjectIds::default();
        assert_ne!(
            ids.of("ns", "a"),
            other.of("ns", "a"),
            "keys differ per process"
        );
        let mut set = std::collections::HashSet::with_hasher(IdHasher::default());
        for n in 0..100_000 {
            assert!(set.insert(ids.of("percona", &format!("cron-cluster1-{n}"))));
        }
    }
}
