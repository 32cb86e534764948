//! Readiness: named gates that must all open before `/readyz` answers 200.
//!
//! Each component that needs start-up work (loading the config, syncing a watch cache)
//! registers a gate and opens it when done. Shutdown closes the `shutdown` gate first, so load
//! balancers stop sending traffic before the server stops accepting it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The set of readiness gates, cheap to clone and share.
#[derive(Clone, Default)]
pub struct Readiness {
    gates: Arc<Mutex<BTreeMap<String, bool>>>,
}

/// One gate; opening it marks its component ready.
#[derive(Clone)]
pub struct Gate {
    name: String,
    readiness: Readiness,
}

impl Readiness {
    /// An empty set: ready until a gate is registered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a closed gate named `name` (registering a name twice returns the same gate).
    pub fn gate(&self, name: &str) -> Gate {
        self.lock().entry(name.to_owned()).or_insert(false);
        Gate {
            name: name.to_owned(),
            readiness: self.clone(),
        }
    }

    /// The names of gates still closed; empty means ready.
    pub fn pending(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, open)| !**open)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Whether every gate is open.
    pub fn is_ready(&self) -> bool {
        self.pending().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, bool>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts),
        // so a poisoned lock is still safe to use.
        self.gates.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Gate {
    /// Marks the component ready.
    pub fn open(&self) {
        self.readiness.lock().insert(self.name.clone(), true);
    }

    /// Marks the component not ready (e.g. shutting down, or a watch lost its cache).
    pub fn close(&self) {
        self.readiness.lock().insert(self.name.clone(), false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_gate_is_open() {
        let r = Readiness::new();
        assert!(r.is_ready());
        let a = r.gate("config");
        let b = r.gate("watch");
        assert_eq!(r.pending(), vec!["config".to_owned(), "watch".to_owned()]);
        a.open();
        assert!(!r.is_ready());
        b.open();
        assert!(r.is_ready());
        a.close();
        assert_eq!(r.pending(), vec!["config".to_owned()]);
    }
}
