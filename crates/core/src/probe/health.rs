//! What this replica's prober last saw: since when each cluster storage's target has been
//! failing (what the responder's alert-route check compares with the notifications that did,
//! or did not, arrive), and each target's latest result, from which the blast radius of a
//! failure is judged ([`super::blast`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use jiff::Timestamp;

use crate::clock::Clock;
use crate::probe::blast::{self, Seen, Verdict};
use crate::probe::cycle::CycleResult;
use crate::probe::target::{Target, User};

/// A storage of a cluster: namespace, cluster, storage name.
pub type StorageRef = (String, String, String);

/// The start of the current run of failed cycles, per storage that uses a probed target.
pub struct DownSince {
    clock: Arc<dyn Clock>,
    by_storage: Mutex<BTreeMap<StorageRef, Timestamp>>,
    /// Each probed target's latest result, by target id, and the storages using it.
    seen: Mutex<BTreeMap<String, (Seen, Vec<StorageRef>)>>,
    /// The AWS Health API's last read, when it is enabled.
    feed: std::sync::OnceLock<Arc<crate::probe::aws_health::HealthFeed>>,
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
            seen: Mutex::new(BTreeMap::new()),
            feed: std::sync::OnceLock::new(),
        }
    }

    /// Adds the AWS Health API's reads to the verdicts' reasons.
    pub fn set_feed(&self, feed: Arc<crate::probe::aws_health::HealthFeed>) {
        let _ = self.feed.set(feed);
    }

    /// The AWS Health API's reads, when enabled.
    pub fn feed(&self) -> Option<&Arc<crate::probe::aws_health::HealthFeed>> {
        self.feed.get()
    }

    /// The regions the AWS Health API is asked about: those of the AWS targets probed (an
    /// S3-compatible target's region is nominal), and `extra`.
    pub fn aws_regions(&self, extra: &[String]) -> Vec<String> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let mut regions: Vec<String> = seen
            .values()
            .filter(|(s, _)| s.key.endpoint_url.is_none())
            .map(|(s, _)| s.key.region.clone())
            .chain(extra.iter().cloned())
            .collect();
        regions.sort();
        regions.dedup();
        regions
    }

    /// Records one cycle of `target` (see [`DownSince::record_seen`]).
    pub fn record(&self, target: &Target, result: &CycleResult) {
        let classes = result
            .operations
            .iter()
            .filter_map(super::cycle::OperationResult::error_class)
            .collect();
        self.record_seen(target, result.up, classes);
    }

    /// Records one cycle of `target` that passed (`up`) or failed with `classes`: an `up`
    /// cycle clears its storages; a failed one starts their run of failures now unless one
    /// is already running.
    pub fn record_seen(&self, target: &Target, up: bool, classes: Vec<super::ErrorClass>) {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                target.id(),
                (
                    Seen {
                        key: target.key.clone(),
                        up,
                        classes,
                    },
                    storages(target).collect(),
                ),
            );
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
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&target.id());
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

impl DownSince {
    /// The blast radius of every probed target, by target id, with its key.
    pub fn verdicts(&self) -> Vec<(String, crate::probe::target::TargetKey, Verdict)> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let all: BTreeMap<String, Seen> = seen
            .iter()
            .map(|(id, (s, _))| (id.clone(), s.clone()))
            .collect();
        all.iter()
            .filter_map(|(id, s)| Some((id.clone(), s.key.clone(), blast::verdict(id, &all)?)))
            .collect()
    }

    /// The blast radius of the target storage `storage` of `namespace/cluster` uses, with
    /// the target's id; `None` when no probed target serves it.
    pub fn verdict_of(
        &self,
        namespace: &str,
        cluster: &str,
        storage: &str,
    ) -> Option<(String, Verdict)> {
        let wanted = (namespace.to_owned(), cluster.to_owned(), storage.to_owned());
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let id = seen
            .iter()
            .find(|(_, (_, users))| users.contains(&wanted))
            .map(|(id, _)| id.clone())?;
        let all: BTreeMap<String, Seen> = seen
            .iter()
            .map(|(id, (s, _))| (id.clone(), s.clone()))
            .collect();
        let mut verdict = blast::verdict(&id, &all)?;
        let region = all
            .get(&id)
            .map(|s| s.key.region.clone())
            .unwrap_or_default();
        if let Some(clause) = self.feed().and_then(|f| f.clause_for(&region)) {
            verdict.reason = format!("{}; {clause}", verdict.reason);
        }
        Some((id.clone(), verdict))
    }
}

/// Renders, at scrape, the blast radius of every probed target (one-hot over the scopes) and a
/// verdict per region and endpoint: `healthy` (every target there passes), `partial`, `down`
/// (every one fails).
pub struct BlastCollector {
    health: Arc<DownSince>,
}

impl std::fmt::Debug for BlastCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlastCollector").finish_non_exhaustive()
    }
}

impl BlastCollector {
    /// A collector reading what the prober recorded in `health`.
    pub fn new(health: Arc<DownSince>) -> Self {
        Self { health }
    }
}

impl prometheus_client::collector::Collector for BlastCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        let verdicts = self.health.verdicts();
        crate::watch::collector::gauge(
            &mut encoder,
            "backstop_s3_blast_radius",
            "How far a target's failure reaches, judged against every other probed target \
             (one-hot: healthy, target, credentials, endpoint, region, everywhere)",
            verdicts.iter().flat_map(|(id, _, v)| {
                blast::Scope::ALL.iter().map(move |scope| {
                    (
                        [("target", id.as_str()), ("scope", scope.as_str())],
                        i64::from(*scope == v.scope),
                    )
                })
            }),
        )?;
        let mut regions: BTreeMap<(String, String), (u32, u32)> = BTreeMap::new();
        for (_, key, v) in &verdicts {
            let endpoint = key.endpoint_url.clone().unwrap_or_else(|| "aws".to_owned());
            let tally = regions.entry((key.region.clone(), endpoint)).or_default();
            if v.scope == blast::Scope::Healthy {
                tally.0 += 1;
            } else {
                tally.1 += 1;
            }
        }
        if let Some(feed) = self.health.feed() {
            use crate::probe::aws_health::LastRead;
            let last = feed.last();
            if last != LastRead::Never {
                crate::watch::collector::gauge(
                    &mut encoder,
                    "backstop_aws_health_up",
                    "1 when the last read of the AWS Health API succeeded (probe.aws_health)",
                    [(
                        [("api", "DescribeEvents")],
                        i64::from(matches!(last, LastRead::Events(_))),
                    )],
                )?;
            }
            if let LastRead::Events(events) = &last {
                let mut by_region: BTreeMap<&str, i64> = BTreeMap::new();
                for e in events {
                    *by_region.entry(e.region.as_str()).or_default() += 1;
                }
                crate::watch::collector::gauge(
                    &mut encoder,
                    "backstop_aws_health_open_events",
                    "Open S3 events the AWS Health API reports, per region (probe.aws_health)",
                    by_region
                        .iter()
                        .map(|(region, n)| ([("region", *region)], *n)),
                )?;
            }
        }
        crate::watch::collector::gauge(
            &mut encoder,
            "backstop_s3_region_verdict",
            "Per region and endpoint (aws for AWS): healthy when every probed target there \
             passes, down when every one fails, else partial (one-hot)",
            regions.iter().flat_map(|((region, endpoint), (up, down))| {
                let verdict = match (up, down) {
                    (_, 0) => "healthy",
                    (0, _) => "down",
                    _ => "partial",
                };
                ["healthy", "partial", "down"].map(move |v| {
                    (
                        [
                            ("region", region.as_str()),
                            ("endpoint", endpoint.as_str()),
                            ("verdict", v),
                        ],
                        i64::from(v == verdict),
                    )
                })
            }),
        )?;
        Ok(())
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
        down.record_seen(&t, true, vec![]);
        assert_eq!(down.of("ns", "c1", "s3-us-west"), None);
        down.record_seen(&t, false, vec![]);
        clock.advance(jiff::SignedDuration::from_secs(30));
        down.record_seen(&t, false, vec![]);
        assert_eq!(
            down.of("ns", "c1", "s3-us-west"),
            Some("2026-11-24T12:00:00Z".parse().unwrap())
        );
        assert_eq!(down.of("ns", "c1", "other"), None);
        down.record_seen(&t, true, vec![]);
        assert_eq!(down.of("ns", "c1", "s3-us-west"), None);
        down.record_seen(&t, false, vec![]);
        down.forget(&t);
        assert_eq!(down.of("ns", "c1", "s3-us-west"), None);
    }
}
