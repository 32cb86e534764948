//! The index read as a scrape reads it: per storage, per schedule and per cluster, in
//! stable orders. Queries only; [`super`] keeps the index up to date.

use super::*;

/// One storage's backups as a scrape sees them.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageView<'a> {
    /// Which storage.
    pub key: &'a StorageKey,
    by_state: &'a [(u16, u64)],
    names: &'a [Box<str>],
    /// Completion time of the newest Succeeded backup.
    pub last_success: Option<Timestamp>,
    /// Time of the newest Failed backup (completion, else creation).
    pub last_failure: Option<Timestamp>,
}

impl<'a> StorageView<'a> {
    /// How many backups are in each state (`""` is reported as `New`), by state name, in the
    /// order the states were first seen.
    pub fn states(&self) -> impl Iterator<Item = (&'a str, u64)> + use<'a> {
        let (names, by_state) = (self.names, self.by_state);
        by_state
            .iter()
            .filter_map(move |(s, n)| Some((&**names.get(usize::from(*s))?, *n)))
    }
}

/// The SLO of one schedule at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSlo<'a> {
    /// Namespace.
    pub namespace: &'a str,
    /// Cluster.
    pub cluster: &'a str,
    /// Schedule name.
    pub schedule: &'a str,
    /// The retention window; `None` when unbounded or unparseable.
    pub window: Option<SignedDuration>,
    /// Age of the cluster's newest successful backup; `None` when it has none.
    pub last_success_age: Option<SignedDuration>,
    /// Age ÷ window; `None` when either is unknown.
    pub budget_ratio: Option<f64>,
}

/// Backup Jobs of one cluster in one state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCount<'a> {
    /// Namespace.
    pub namespace: &'a str,
    /// Cluster (the Job's `percona.com/cluster` label).
    pub cluster: &'a str,
    /// `active`, `succeeded` or `failed`.
    pub state: &'static str,
    /// How many.
    pub count: u64,
}

/// The oldest unfinished backup of one storage in one state.
#[derive(Debug, Clone, PartialEq)]
pub struct Unfinished<'a> {
    /// Which storage.
    pub key: &'a StorageKey,
    /// `New`, `Starting`, `Running` (or another state the operator names).
    pub state: &'a str,
    /// The oldest one's creation time.
    pub oldest: Timestamp,
}

impl BackupIndex {
    /// Per storage and state, the oldest backup not finished yet: where a backup hangs
    /// (`Starting`, `Running`) or waits (`New`).
    pub fn oldest_unfinished(&self) -> Vec<Unfinished<'_>> {
        let mut oldest: BTreeMap<(Id, u16), i64> = BTreeMap::new();
        for u in self.unfinished.values() {
            let at = oldest.entry((u.storage, u.state)).or_insert(u.created_ms);
            *at = (*at).min(u.created_ms);
        }
        oldest
            .into_iter()
            .filter_map(|((storage, state), ms)| {
                Some(Unfinished {
                    key: self.aggregates.key(storage)?,
                    state: self.states.get(usize::from(state))?,
                    oldest: Timestamp::from_millisecond(ms).ok()?,
                })
            })
            .collect()
    }

    /// Whether each cluster lets its backups run side by side (`spec.backup.allowParallel`).
    pub fn parallel_allowed(&self) -> impl Iterator<Item = (&str, &str, bool)> {
        self.clusters
            .iter()
            .map(|((ns, name), view)| (ns.as_str(), name.as_str(), view.allow_parallel))
    }

    /// Current backup Jobs by namespace, cluster and state, sorted; states with none are
    /// left out.
    pub fn jobs_by_state(&self) -> Vec<JobCount<'_>> {
        let mut out: Vec<JobCount<'_>> = self
            .job_clusters
            .iter()
            .flat_map(|(_, (namespace, cluster), counts)| {
                JOB_STATES
                    .iter()
                    .zip(counts)
                    .filter(|(_, n)| **n > 0)
                    .map(|(state, n)| JobCount {
                        namespace,
                        cluster,
                        state,
                        count: *n,
                    })
            })
            .collect();
        out.sort_by(|a, b| {
            (a.namespace, a.cluster, a.state).cmp(&(b.namespace, b.cluster, b.state))
        });
        out
    }

    /// Every cluster's storages by `(namespace, cluster)`: what target discovery reads.
    pub fn storages(&self) -> &BTreeMap<(String, String), BTreeMap<String, Storage>> {
        &self.storages
    }

    /// Increases whenever any cluster's storages change, so discovery can skip unchanged
    /// rounds cheaply.
    pub fn storages_generation(&self) -> u64 {
        self.generation
    }

    /// Every storage that has backups, sorted by key.
    pub fn storage_views(&self) -> Vec<StorageView<'_>> {
        self.aggregates
            .iter()
            .map(|(_, key, a)| StorageView {
                key,
                by_state: &a.by_state,
                names: &self.states,
                last_success: a.successes.last().and_then(|t| timestamp(*t)),
                last_failure: a.failures.last().and_then(|t| timestamp(*t)),
            })
            .collect()
    }

    /// Current backups by storage and state (`""` is reported as `New`).
    pub fn count_by_state(&self) -> BTreeMap<(StorageKey, String), u64> {
        self.storage_views()
            .into_iter()
            .flat_map(|v| {
                let key = v.key;
                v.states()
                    .map(move |(state, n)| ((key.clone(), state.to_owned()), n))
            })
            .collect()
    }

    /// The newest completion time of a Succeeded backup, per storage.
    pub fn last_success(&self) -> BTreeMap<StorageKey, Timestamp> {
        self.storage_views()
            .into_iter()
            .filter_map(|v| Some((v.key.clone(), v.last_success?)))
            .collect()
    }

    /// The newest failure time per storage (completion time, else creation time: failed
    /// backups often have no completion time).
    pub fn last_failure(&self) -> BTreeMap<StorageKey, Timestamp> {
        self.storage_views()
            .into_iter()
            .filter_map(|v| Some((v.key.clone(), v.last_failure?)))
            .collect()
    }

    /// The newest successful backup of each cluster that has one, on any storage, in
    /// milliseconds, sorted by `(namespace, cluster)`. Storages come in key order, so a
    /// cluster's storages are adjacent.
    fn cluster_successes(&self) -> Vec<((&str, &str), i64)> {
        let mut newest: Vec<((&str, &str), i64)> = Vec::new();
        for (_, key, a) in self.aggregates.iter() {
            let Some(&t) = a.successes.last() else {
                continue;
            };
            let cluster = (key.namespace.as_str(), key.cluster.as_str());
            match newest.last_mut() {
                Some((last, newest_t)) if *last == cluster => *newest_t = (*newest_t).max(t),
                _ => newest.push((cluster, t)),
            }
        }
        newest
    }

    fn find_success(newest: &[((&str, &str), i64)], cluster: (&str, &str)) -> Option<Timestamp> {
        newest
            .binary_search_by(|(c, _)| c.cmp(&cluster))
            .ok()
            .and_then(|at| timestamp(newest[at].1))
    }

    /// The newest successful backup of a cluster, on any storage.
    pub fn cluster_last_success(&self, namespace: &str, cluster: &str) -> Option<Timestamp> {
        Self::find_success(&self.cluster_successes(), (namespace, cluster))
    }

    /// Every schedule's SLO at `now`, sorted by namespace, cluster and schedule order.
    pub fn schedule_slos(&self, now: Timestamp) -> Vec<ScheduleSlo<'_>> {
        let newest = self.cluster_successes();
        let mut out = Vec::new();
        for ((ns, cluster), view) in &self.clusters {
            let age = Self::find_success(&newest, (ns.as_str(), cluster.as_str()))
                .map(|t| now.duration_since(t).max(SignedDuration::ZERO));
            for schedule in &view.schedules {
                let window = match (schedule.gap, schedule.count) {
                    (Some(gap), Some(count)) => window_from_gap(gap, count),
                    _ => None,
                };
                let budget_ratio = match (age, window) {
                    (Some(age), Some(window)) if window.is_positive() => {
                        Some(age.as_secs_f64() / window.as_secs_f64())
                    }
                    _ => None,
                };
                out.push(ScheduleSlo {
                    namespace: ns,
                    cluster,
                    schedule: &schedule.name,
                    window,
                    last_success_age: age,
                    budget_ratio,
                });
            }
        }
        out
    }
}
