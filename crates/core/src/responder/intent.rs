//! The intent: what the alerts say a cluster's backups should be doing, recorded on the
//! PerconaXtraDBCluster as an annotation so every replica, a restarted process and a human
//! with kubectl all see the same thing.
//!
//! Each alert episode is keyed by the alert's fingerprint and remembered with its `startsAt`.
//! Merging follows one rule, so duplicates, repeats and reordered deliveries converge on the
//! same result whatever order they arrive in:
//!
//! * a later `startsAt` is a new episode and replaces the old one;
//! * for the same `startsAt`, `resolved` is final: a late or repeated `firing` of an episode
//!   that already resolved changes nothing.
//!
//! The cluster should be failed over while any episode is firing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::alertmanager::AlertStatus;

/// The annotation holding the intent, as JSON.
pub const INTENT_ANNOTATION: &str = "backstop.percona.com/intent";

/// The current format version of the intent annotation.
pub const INTENT_VERSION: u32 = 1;

/// The episode key of a failover or revert asked for by hand (`backstop failover`).
pub const MANUAL_KEY: &str = "manual";

/// Resolved episodes are forgotten after this long; a notification delayed by more than this
/// could re-open one (Alertmanager gives up on a notification long before).
const FORGET_RESOLVED_AFTER: jiff::SignedDuration = jiff::SignedDuration::from_hours(24 * 7);

/// The most episodes kept; the oldest resolved ones go first.
const MAX_EPISODES: usize = 64;

/// The recorded intent of one cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Intent {
    /// Format version ([`INTENT_VERSION`]).
    pub version: u32,
    /// Alert episodes by fingerprint.
    #[serde(default)]
    pub episodes: BTreeMap<String, Episode>,
}

impl Default for Intent {
    fn default() -> Self {
        Self {
            version: INTENT_VERSION,
            episodes: BTreeMap::new(),
        }
    }
}

/// One alert episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Episode {
    /// The alert's `alertname`, for people reading the annotation.
    #[serde(default)]
    pub alertname: String,
    /// When the episode started firing.
    pub starts_at: jiff::Timestamp,
    /// Its latest status.
    pub status: AlertStatus,
    /// When Backstop last changed this entry.
    pub updated_at: jiff::Timestamp,
}

/// Why an intent annotation could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IntentError {
    /// Not JSON of the expected shape.
    #[error("intent annotation is not valid: {0}")]
    Invalid(#[from] serde_json::Error),
    /// Written by a newer Backstop.
    #[error("intent annotation has version {0}, newer than this Backstop understands")]
    Version(u32),
}

impl Intent {
    /// Reads the annotation value.
    ///
    /// # Errors
    ///
    /// [`IntentError`] when it is not an intent this version understands.
    pub fn parse(text: &str) -> Result<Self, IntentError> {
        let intent: Self = serde_json::from_str(text)?;
        if intent.version > INTENT_VERSION {
            return Err(IntentError::Version(intent.version));
        }
        Ok(intent)
    }

    /// The annotation value.
    pub fn render(&self) -> String {
        // Serializing maps of strings and timestamps cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Merges one observation of an episode; `true` when the intent changed.
    pub fn observe(
        &mut self,
        key: &str,
        alertname: &str,
        starts_at: jiff::Timestamp,
        status: AlertStatus,
        now: jiff::Timestamp,
    ) -> bool {
        let replace = self.would_change(key, starts_at, status);
        if replace {
            self.episodes.insert(
                key.to_owned(),
                Episode {
                    alertname: alertname.to_owned(),
                    starts_at,
                    status,
                    updated_at: now,
                },
            );
        }
        replace
    }

    /// Whether [`Intent::observe`] of this observation would change the intent: a new
    /// episode, a later one, or the known episode resolving.
    pub fn would_change(&self, key: &str, starts_at: jiff::Timestamp, status: AlertStatus) -> bool {
        match self.episodes.get(key) {
            None => true,
            Some(known) if starts_at > known.starts_at => true,
            Some(known) if starts_at == known.starts_at => {
                known.status == AlertStatus::Firing && status == AlertStatus::Resolved
            }
            Some(_) => false,
        }
    }

    /// Marks every firing episode resolved (a revert asked for by hand); `true` when any was.
    pub fn resolve_all(&mut self, now: jiff::Timestamp) -> bool {
        let mut changed = false;
        for episode in self.episodes.values_mut() {
            if episode.status == AlertStatus::Firing {
                episode.status = AlertStatus::Resolved;
                episode.updated_at = now;
                changed = true;
            }
        }
        changed
    }

    /// Whether the cluster should be failed over: some episode is firing.
    pub fn wants_failover(&self) -> bool {
        self.episodes
            .values()
            .any(|e| e.status == AlertStatus::Firing)
    }

    /// Drops resolved episodes that are old, then the oldest resolved ones beyond the cap.
    /// Firing episodes are never dropped: losing one would lose a failover.
    pub fn prune(&mut self, now: jiff::Timestamp) {
        self.episodes.retain(|_, e| {
            e.status == AlertStatus::Firing
                || now.duration_since(e.updated_at) < FORGET_RESOLVED_AFTER
        });
        while self.episodes.len() > MAX_EPISODES {
            let oldest = self
                .episodes
                .iter()
                .filter(|(_, e)| e.status == AlertStatus::Resolved)
                .min_by_key(|(_, e)| e.updated_at)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(key) => {
                    self.episodes.remove(&key);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AlertStatus::{Firing, Resolved};

    fn at(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    /// Every order of the same deliveries ends in the same intent.
    #[test]
    fn order_does_not_matter() {
        let deliveries = [
            ("a", at(0), Firing),
            ("a", at(0), Firing),
            ("a", at(0), Resolved),
            ("b", at(5), Firing),
            ("a", at(10), Firing),
            ("b", at(5), Resolved),
        ];
        let mut expected = None;
        let n = deliveries.len();
        // All permutations of six deliveries.
        let mut idx: Vec<usize> = (0..n).collect();
        let mut c = vec![0; n];
        let mut run = |order: &[usize]| {
            let mut intent = Intent::default();
            for &i in order {
                let (k, s, st) = deliveries[i];
                intent.observe(k, "A", s, st, at(100));
            }
            let summary: Vec<_> = intent
                .episodes
                .iter()
                .map(|(k, e)| (k.clone(), e.starts_at, e.status))
                .collect();
            match &expected {
                None => expected = Some(summary),
                Some(e) => assert_eq!(e, &summary, "order {order:?}"),
            }
        };
        run(&idx);
        let mut i = 0;
        while i < n {
            if c[i] < i {
                if i % 2 == 0 {
                    idx.swap(0, i);
                } else {
                    idx.swap(c[i], i);
                }
                run(&idx);
                c[i] += 1;
                i = 0;
            } else {
                c[i] = 0;
                i += 1;
            }
        }
        let expected = expected.unwrap();
        assert_eq!(
            expected,
            vec![("a".into(), at(10), Firing), ("b".into(), at(5), Resolved)]
        );
    }

    #[test]
    fn a_late_firing_of_a_resolved_episode_is_ignored() {
        let mut intent = Intent::default();
        assert!(intent.observe("a", "A", at(0), Firing, at(1)));
        assert!(intent.wants_failover());
        assert!(intent.observe("a", "A", at(0), Resolved, at(2)));
        assert!(!intent.observe("a", "A", at(0), Firing, at(3)));
        assert!(!intent.wants_failover());
        assert!(intent.observe("a", "A", at(9), Firing, at(4)));
        assert!(intent.wants_failover());
    }

    #[test]
    fn would_change_predicts_observe() {
        let mut intent = Intent::default();
        intent.observe("a", "A", at(5), Firing, at(5));
        intent.observe("b", "A", at(5), Resolved, at(5));
        for key in ["a", "b", "new"] {
            for start in [at(0), at(5), at(9)] {
                for status in [Firing, Resolved] {
                    let predicted = intent.would_change(key, start, status);
                    let mut copy = intent.clone();
                    let changed = copy.observe(key, "A", start, status, at(10));
                    assert_eq!(predicted, changed, "{key} {start} {status:?}");
                    assert_eq!(changed, copy != intent, "{key} {start} {status:?}");
                }
            }
        }
    }

    #[test]
    fn pruning_keeps_firing_episodes() {
        let mut intent = Intent::default();
        intent.observe("old", "A", at(0), Resolved, at(0));
        intent.observe("live", "A", at(0), Firing, at(0));
        intent.prune(at(0) + jiff::SignedDuration::from_hours(24 * 8));
        assert_eq!(intent.episodes.keys().collect::<Vec<_>>(), vec!["live"]);
        for i in 0..100 {
            intent.observe(&format!("r{i}"), "A", at(i), Resolved, at(i));
        }
        intent.prune(at(200));
        assert_eq!(intent.episodes.len(), MAX_EPISODES);
        assert!(intent.wants_failover());
    }

    #[test]
    fn round_trips_and_refuses_newer_versions() {
        let mut intent = Intent::default();
        intent.observe("a", "A", at(0), Firing, at(1));
        assert_eq!(Intent::parse(&intent.render()).unwrap(), intent);
        assert!(matches!(
            Intent::parse(r#"{"version":2,"episodes":{}}"#),
            Err(IntentError::Version(2))
        ));
        assert!(Intent::parse("{").is_err());
    }
}
