//! Since when each cluster storage's target has been failing its probe, as this replica's
//! prober saw it: what the responder's alert-route check compares with the notifications that
//! did (or did not) arrive.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use jiff::Timestamp;

use crate::clock::Clock;
use crate::probe::target::{Target, User};

/// A storage of a cluster: namespace, cluster, storage name.
pub type StorageRef = (String, String, String);

/// The start of the current run of failed cycles, per storage that uses a probed target.
pub struct DownSince {
    clock: Arc<dyn Clock>,
    by_storage: Mutex<BTreeMap<StorageRef, Timestamp>>,
}

impl std::fmt::Debug for DownSince {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownSince").finish_non_exhaustive()
    }
}

impl DownSince {
    /// An empty record that timestamps by `clock` (the responder's, so the two compare).
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            by_storage: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records one cycle of `target`: an `up` cycle clears its storages; a failed one starts
    /// their run of failures now unless one is already running.
    pub fn record(&self, target: &Target, up: bool) {
        let now = self.clock.now();
        let mut map = self
            .by_storage
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for storage in storages(target) {
            if up {
                map.remove(&storage);
            } else {
                map.entry(storage).or_insert(now);
            }
        }
    }

    /// Forgets `target`'s storages (it is no longer probed, so nothing is known).
    pub fn forget(&self, target: &Target) {
        let mut map = self
            .by_storage
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for storage in storages(target) {
            map.remove(&storage);
        }
    }

    /// Since when storage `storage` of `namespace/cluster` has been failing, if it is.
    pub fn of(&self, namespace: &str, cluster: &str, storage: &str) -> Option<Timestamp> {
        let map = self
            .by_storage
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(&(namespace.to_owned(), cluster.to_owned(), storage.to_owned()))
            .copied()
    }
}

fn storages(target: &Target) -> impl Iterator<Item = StorageRef> + '_ {
    target.users.iter().filter_map(|user| match user {
        User::Storage {
            namespace,
            cluster,
            storage,
        } => Some((namespace.clone(), cluster.clone(), storage.clone())),
        User::Static { .. } => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::pxc::Storage;

    fn target(storage: &str) -> Target {
        let definition: Storage = serde_json::from_value(serde_json::json!({
            "type": "s3", "s3": {"bucket": "b", "region": "us-east-1"}
        }))
        .unwrap();
        Target::from_storage("ns", "c1", storage, &definition).unwrap()
    }

    #[test]
    fn the_first_failure_starts_the_run_and_success_ends_it() {
        let clock = Arc::new(ManualClock::new("2026-11-24T12:00:00Z".parse().unwrap()));
        let down = DownSince::new(clock.clone());
        let t = target("s3-us-west");
        down.record(&t, true);
        assert_eq!(down.of("ns", "c1", "s3-us-west"), None);
        down.record(&t, false);
        clock.advance(jiff::SignedDuration::from_secs(30));
        down.record(&t, false);
        assert_eq!(
            down.of("ns", "c1", "s3-us-west"),
            Some("2026-11-24T12:00:00Z".parse().unwrap())
        );
        assert_eq!(down.of("ns", "c1", "other"), None);
        down.record(&t, true);
        assert_eq!(down.of("ns", "c1", "s3-us-west"), None);
        down.record(&t, false);
        down.forget(&t);
        assert_eq!(down.of("ns", "c1", "s3-us-west"), None);
    }
}
