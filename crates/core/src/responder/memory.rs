//! What this replica remembers between reconciles, in memory only: the primary's hold-down
//! passes, the checks of the failover targets, and the last notice said about each cluster. A restart
//! or a new leader starts all of it afresh, which can only delay a step, never cause one.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::cluster::ClusterKey;
use super::playbook::retarget::TargetWatch;

/// One cluster's hold-down: the primary's consecutive passing checks, and when the last one
/// counted (a check counts only a probe interval after the previous one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldDown {
    /// Consecutive passing checks.
    pub passes: u32,
    /// When the last one ran.
    pub last: jiff::Timestamp,
}

/// The replica's memory, per cluster.
#[derive(Debug, Default)]
pub struct Memory {
    hold_down: Mutex<HashMap<ClusterKey, HoldDown>>,
    targets: Mutex<HashMap<ClusterKey, TargetWatch>>,
    notices: Mutex<HashMap<ClusterKey, String>>,
}

impl Memory {
    /// Forgets everything: another replica may have led in between, so checks from an
    /// earlier term are not consecutive with the next.
    pub fn clear(&self) {
        lock(&self.hold_down).clear();
        lock(&self.targets).clear();
        lock(&self.notices).clear();
    }

    /// The hold-down of `key`.
    pub fn hold_down(&self, key: &ClusterKey) -> Option<HoldDown> {
        lock(&self.hold_down).get(key).copied()
    }

    /// Records a check of the primary: one more pass at `now`, or (`passed` false) the count
    /// starts over. Returns the passes in a row.
    pub fn count_hold_down(&self, key: &ClusterKey, passed: bool, now: jiff::Timestamp) -> u32 {
        let mut hold = lock(&self.hold_down);
        if !passed {
            hold.remove(key);
            return 0;
        }
        let entry = hold.entry(key.clone()).or_insert(HoldDown {
            passes: 0,
            last: now,
        });
        entry.passes += 1;
        entry.last = now;
        entry.passes
    }

    /// Forgets the hold-down of `key`: a failover or a revert starts it afresh.
    pub fn forget_hold_down(&self, key: &ClusterKey) {
        lock(&self.hold_down).remove(key);
    }

    /// When the targets of `key` were last checked.
    pub fn targets_checked(&self, key: &ClusterKey) -> Option<jiff::Timestamp> {
        lock(&self.targets).get(key).and_then(|w| w.last)
    }

    /// Takes the watch of `key`'s targets out while the checks run (a cluster is reconciled
    /// by one task at a time), so no lock is held across them.
    pub fn take_targets(&self, key: &ClusterKey) -> TargetWatch {
        lock(&self.targets).remove(key).unwrap_or_default()
    }

    /// Puts the watch of `key`'s targets back.
    pub fn put_targets(&self, key: &ClusterKey, watch: TargetWatch) {
        lock(&self.targets).insert(key.clone(), watch);
    }

    /// Forgets the watch of `key`'s targets: failed and passed checks count only while
    /// nothing else happens.
    pub fn forget_targets(&self, key: &ClusterKey) {
        lock(&self.targets).remove(key);
    }

    /// Whether `fingerprint` differs from the last notice about `key`; remembers it.
    pub fn is_new_notice(&self, key: &ClusterKey, fingerprint: String) -> bool {
        let mut notices = lock(&self.notices);
        if notices.get(key) == Some(&fingerprint) {
            return false;
        }
        notices.insert(key.clone(), fingerprint);
        true
    }

    /// Forgets the last notice about `key`, so the next one is said even if it repeats.
    pub fn forget_notice(&self, key: &ClusterKey) {
        lock(&self.notices).remove(key);
    }
}

/// A poisoned lock still holds usable bookkeeping: a panic elsewhere must not stop the
/// responder.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
