//! The backup index: the current clusters and backups as plain data. Watch events update it,
//! metrics read it at scrape time, and it does no I/O, so every rule here is tested with values.
//!
//! SLO rule: a cluster is as safe as its newest successful backup, on whatever storage (a
//! backup written to the secondary during a failover counts). For each schedule, the budget
//! ratio is the age of that backup divided by the schedule's retention window; at 1 the
//! outage has outlived the window and the oldest kept backups are older than the newest good
//! one.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt as _;

use crate::pxc::{PerconaXtraDBCluster, PerconaXtraDBClusterBackup, Storage, state};
use crate::schedule::CronSchedule;
use crate::watch::retention::{shortest_gap, window_from_gap};

/// One storage of one cluster (the label set of per-storage backup metrics).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StorageKey {
    /// Namespace.
    pub namespace: String,
    /// Cluster.
    pub cluster: String,
    /// Storage name.
    pub storage: String,
}

/// One schedule of one cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ScheduleKey {
    /// Namespace.
    pub namespace: String,
    /// Cluster.
    pub cluster: String,
    /// Schedule name.
    pub schedule: String,
}

/// What the index keeps of a backup. Cluster, storage and state repeat across thousands of
/// backups, so they are interned: one allocation each, shared.
#[derive(Debug, Clone, PartialEq)]
struct BackupView {
    cluster: Arc<str>,
    storage: Arc<str>,
    state: Arc<str>,
    created: Option<Timestamp>,
    completed: Option<Timestamp>,
}

/// What the index keeps of a cluster's schedule. The shortest gap between runs is computed
/// once, when the schedule is seen, not at every scrape: it walks up to a year of runs.
#[derive(Debug, Clone)]
struct ScheduleView {
    name: String,
    gap: Option<SignedDuration>,
    count: Option<i64>,
}

/// Per-storage aggregates, kept up to date on every upsert and removal so a scrape reads
/// them without walking every backup. Times are multisets (time → how many backups), so
/// removing a backup removes exactly its contribution.
#[derive(Debug, Default, Clone, PartialEq)]
struct Aggregate {
    by_state: BTreeMap<String, u64>,
    successes: BTreeMap<Timestamp, u32>,
    failures: BTreeMap<Timestamp, u32>,
}

impl Aggregate {
    fn is_empty(&self) -> bool {
        self.by_state.is_empty()
    }
}

fn add_time(times: &mut BTreeMap<Timestamp, u32>, t: Timestamp) {
    *times.entry(t).or_insert(0) += 1;
}

fn remove_time(times: &mut BTreeMap<Timestamp, u32>, t: Timestamp) {
    if let Some(n) = times.get_mut(&t) {
        *n -= 1;
        if *n == 0 {
            times.remove(&t);
        }
    }
}

impl BackupView {
    fn state_label(&self) -> &str {
        if self.state.is_empty() {
            "New"
        } else {
            &self.state
        }
    }

    fn success_time(&self) -> Option<Timestamp> {
        self.completed.filter(|_| &*self.state == state::SUCCEEDED)
    }

    /// Failed backups often have no completion time; their creation time stands in.
    fn failure_time(&self) -> Option<Timestamp> {
        self.completed
            .or(self.created)
            .filter(|_| &*self.state == state::FAILED)
    }
}

/// The SLO of one schedule at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSlo {
    /// Which schedule.
    pub key: ScheduleKey,
    /// The retention window; `None` when unbounded or unparseable.
    pub window: Option<SignedDuration>,
    /// Age of the cluster's newest successful backup; `None` when it has none.
    pub last_success_age: Option<SignedDuration>,
    /// Age ÷ window; `None` when either is unknown.
    pub budget_ratio: Option<f64>,
}

/// Clusters and backups by `(namespace, name)`.
#[derive(Debug, Default)]
pub struct BackupIndex {
    backups: BTreeMap<(String, String), BackupView>,
    aggregates: BTreeMap<StorageKey, Aggregate>,
    cluster_successes: BTreeMap<(String, String), BTreeMap<Timestamp, u32>>,
    schedules: BTreeMap<(String, String), Vec<ScheduleView>>,
    storages: BTreeMap<(String, String), BTreeMap<String, Storage>>,
    generation: u64,
    jobs: BTreeMap<(String, String), JobView>,
    strings: HashSet<Arc<str>>,
}

/// What the index keeps of a backup Job: its cluster and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct JobView {
    cluster: String,
    state: &'static str,
}

/// The state of a Job from its status: `failed` once it has a Failed condition (the backoff
/// limit is spent), `succeeded` with a Complete condition, else `active`.
pub fn job_state(job: &k8s_openapi::api::batch::v1::Job) -> &'static str {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map_or(&[][..], Vec::as_slice);
    let has = |kind: &str| {
        conditions
            .iter()
            .any(|c| c.type_ == kind && c.status == "True")
    };
    if has("Failed") {
        "failed"
    } else if has("Complete") {
        "succeeded"
    } else {
        "active"
    }
}

fn timestamp(text: Option<&str>) -> Option<Timestamp> {
    text.and_then(|t| t.parse().ok())
}

impl BackupIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a backup as it is now.
    pub fn upsert_backup(&mut self, backup: &PerconaXtraDBClusterBackup) {
        let status = backup.status.clone().unwrap_or_default();
        let storage = status
            .storage_name
            .or_else(|| backup.spec.storage_name.clone())
            .unwrap_or_default();
        let view = BackupView {
            cluster: self.intern(&backup.spec.pxc_cluster),
            storage: self.intern(&storage),
            state: self.intern(status.state.as_deref().unwrap_or_default()),
            created: backup.metadata.creation_timestamp.as_ref().map(|t| t.0),
            completed: timestamp(status.completed.as_deref()),
        };
        let namespace = backup.namespace().unwrap_or_default();
        self.account(&namespace, &view, true);
        if let Some(old) = self
            .backups
            .insert((namespace.clone(), backup.name_any()), view)
        {
            self.account(&namespace, &old, false);
        }
    }

    /// The shared copy of `text`. Strings stay interned for the life of the index; they are
    /// names of clusters, storages and states, a set bounded by what the cluster holds.
    fn intern(&mut self, text: &str) -> Arc<str> {
        if let Some(known) = self.strings.get(text) {
            return known.clone();
        }
        let shared: Arc<str> = Arc::from(text);
        self.strings.insert(shared.clone());
        shared
    }

    /// Forgets a deleted backup.
    pub fn remove_backup(&mut self, namespace: &str, name: &str) {
        if let Some(old) = self
            .backups
            .remove(&(namespace.to_owned(), name.to_owned()))
        {
            self.account(namespace, &old, false);
        }
    }

    /// Adds (or with `add` false, removes) one backup's contribution to the aggregates.
    fn account(&mut self, namespace: &str, view: &BackupView, add: bool) {
        let key = Self::storage_key(namespace, view);
        let aggregate = self.aggregates.entry(key.clone()).or_default();
        let state = view.state_label().to_owned();
        if add {
            *aggregate.by_state.entry(state).or_insert(0) += 1;
        } else if let Some(n) = aggregate.by_state.get_mut(&state) {
            *n -= 1;
            if *n == 0 {
                aggregate.by_state.remove(&state);
            }
        }
        let change = if add { add_time } else { remove_time };
        if let Some(t) = view.success_time() {
            change(&mut aggregate.successes, t);
            let cluster = self
                .cluster_successes
                .entry((namespace.to_owned(), view.cluster.to_string()))
                .or_default();
            change(cluster, t);
            if cluster.is_empty() {
                self.cluster_successes
                    .remove(&(namespace.to_owned(), view.cluster.to_string()));
            }
        }
        if let Some(t) = view.failure_time() {
            change(&mut aggregate.failures, t);
        }
        if aggregate.is_empty() {
            self.aggregates.remove(&key);
        }
    }

    /// Records a cluster's schedules as they are now.
    pub fn upsert_cluster(&mut self, cluster: &PerconaXtraDBCluster) {
        let schedules = cluster
            .spec
            .backup
            .as_ref()
            .and_then(|b| b.schedule.as_ref())
            .map(|list| {
                list.iter()
                    .map(|s| ScheduleView {
                        name: s.name.clone(),
                        gap: CronSchedule::parse(&s.schedule)
                            .ok()
                            .and_then(|cron| shortest_gap(&cron, Timestamp::now())),
                        count: s.retention_count(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let key = (cluster.namespace().unwrap_or_default(), cluster.name_any());
        let storages = cluster
            .spec
            .backup
            .as_ref()
            .and_then(|b| b.storages.clone())
            .unwrap_or_default();
        if self.storages.get(&key) != Some(&storages) {
            self.generation += 1;
        }
        self.storages.insert(key.clone(), storages);
        self.schedules.insert(key, schedules);
    }

    /// Records a backup Job as it is now.
    pub fn upsert_job(&mut self, job: &k8s_openapi::api::batch::v1::Job) {
        let cluster = job
            .labels()
            .get(crate::pxc::labels::CLUSTER)
            .cloned()
            .unwrap_or_default();
        self.jobs.insert(
            (job.namespace().unwrap_or_default(), job.name_any()),
            JobView {
                cluster,
                state: job_state(job),
            },
        );
    }

    /// Forgets a deleted Job.
    pub fn remove_job(&mut self, namespace: &str, name: &str) {
        self.jobs.remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// `(namespace, name)` of every Job, in `namespace` when given.
    pub fn job_names(
        &self,
        namespace: Option<&str>,
    ) -> std::collections::BTreeSet<(String, String)> {
        self.jobs
            .keys()
            .filter(|(ns, _)| namespace.is_none_or(|n| n == ns))
            .cloned()
            .collect()
    }

    /// Current backup Jobs by `(namespace, cluster)` and state (`active`, `succeeded`,
    /// `failed`).
    pub fn jobs_by_state(&self) -> BTreeMap<(String, String, &'static str), u64> {
        let mut counts = BTreeMap::new();
        for ((ns, _), job) in &self.jobs {
            *counts
                .entry((ns.clone(), job.cluster.clone(), job.state))
                .or_insert(0) += 1;
        }
        counts
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

    /// Forgets a deleted cluster.
    pub fn remove_cluster(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        self.schedules.remove(&key);
        if self.storages.remove(&key).is_some() {
            self.generation += 1;
        }
    }

    /// `(namespace, name)` of every backup, in `namespace` when given.
    pub fn backup_names(
        &self,
        namespace: Option<&str>,
    ) -> std::collections::BTreeSet<(String, String)> {
        self.backups
            .keys()
            .filter(|(ns, _)| namespace.is_none_or(|n| n == ns))
            .cloned()
            .collect()
    }

    /// `(namespace, name)` of every cluster, in `namespace` when given.
    pub fn cluster_names(
        &self,
        namespace: Option<&str>,
    ) -> std::collections::BTreeSet<(String, String)> {
        self.schedules
            .keys()
            .filter(|(ns, _)| namespace.is_none_or(|n| n == ns))
            .cloned()
            .collect()
    }

    fn storage_key(namespace: &str, view: &BackupView) -> StorageKey {
        StorageKey {
            namespace: namespace.to_owned(),
            cluster: view.cluster.to_string(),
            storage: view.storage.to_string(),
        }
    }

    /// Current backups by storage and state (`""` is reported as `New`).
    pub fn count_by_state(&self) -> BTreeMap<(StorageKey, String), u64> {
        self.aggregates
            .iter()
            .flat_map(|(key, a)| {
                a.by_state
                    .iter()
                    .map(move |(state, n)| ((key.clone(), state.clone()), *n))
            })
            .collect()
    }

    /// The newest completion time of a Succeeded backup, per storage.
    pub fn last_success(&self) -> BTreeMap<StorageKey, Timestamp> {
        self.latest(|a| &a.successes)
    }

    /// The newest failure time per storage (completion time, else creation time: failed
    /// backups often have no completion time).
    pub fn last_failure(&self) -> BTreeMap<StorageKey, Timestamp> {
        self.latest(|a| &a.failures)
    }

    fn latest(
        &self,
        times: impl Fn(&Aggregate) -> &BTreeMap<Timestamp, u32>,
    ) -> BTreeMap<StorageKey, Timestamp> {
        self.aggregates
            .iter()
            .filter_map(|(key, a)| times(a).last_key_value().map(|(t, _)| (key.clone(), *t)))
            .collect()
    }

    /// The newest successful backup of a cluster, on any storage.
    pub fn cluster_last_success(&self, namespace: &str, cluster: &str) -> Option<Timestamp> {
        self.cluster_successes
            .get(&(namespace.to_owned(), cluster.to_owned()))
            .and_then(|times| times.last_key_value())
            .map(|(t, _)| *t)
    }

    /// Every schedule's SLO at `now`.
    pub fn schedule_slos(&self, now: Timestamp) -> Vec<ScheduleSlo> {
        let mut out = Vec::new();
        for ((ns, cluster), schedules) in &self.schedules {
            let age = self
                .cluster_last_success(ns, cluster)
                .map(|t| now.duration_since(t).max(SignedDuration::ZERO));
            for schedule in schedules {
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
                    key: ScheduleKey {
                        namespace: ns.clone(),
                        cluster: cluster.clone(),
                        schedule: schedule.name.clone(),
                    },
                    window,
                    last_success_age: age,
                    budget_ratio,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn backup(
        name: &str,
        storage: &str,
        state: &str,
        completed: Option<&str>,
    ) -> PerconaXtraDBClusterBackup {
        serde_json::from_value(json!({
            "apiVersion": "pxc.percona.com/v1", "kind": "PerconaXtraDBClusterBackup",
            "metadata": {"name": name, "namespace": "percona", "creationTimestamp": "2026-11-20T00:00:00Z"},
            "spec": {"pxcCluster": "cluster1", "storageName": storage},
            "status": {"state": state, "storageName": storage, "completed": completed},
        }))
        .unwrap()
    }

    fn cluster(schedule: &str, count: i64) -> PerconaXtraDBCluster {
        serde_json::from_value(json!({
            "apiVersion": "pxc.percona.com/v1", "kind": "PerconaXtraDBCluster",
            "metadata": {"name": "cluster1", "namespace": "percona"},
            "spec": {"backup": {"schedule": [{"name": "daily", "schedule": schedule,
                "storageName": "s3-us-west", "retention": {"type": "count", "count": count}}]}},
        }))
        .unwrap()
    }

    fn key(storage: &str) -> StorageKey {
        StorageKey {
            namespace: "percona".into(),
            cluster: "cluster1".into(),
            storage: storage.into(),
        }
    }

    #[test]
    fn last_success_and_failure_per_storage() {
        let mut index = BackupIndex::new();
        index.upsert_backup(&backup(
            "a",
            "s3-us-west",
            "Succeeded",
            Some("2026-11-22T04:00:00Z"),
        ));
        index.upsert_backup(&backup(
            "b",
            "s3-us-west",
            "Succeeded",
            Some("2026-11-23T04:00:00Z"),
        ));
        index.upsert_backup(&backup("c", "s3-us-west", "Failed", None));
        index.upsert_backup(&backup(
            "d",
            "backstop-secondary",
            "Succeeded",
            Some("2026-11-24T04:00:00Z"),
        ));
        let success = index.last_success();
        assert_eq!(
            success[&key("s3-us-west")].to_string(),
            "2026-11-23T04:00:00Z"
        );
        assert_eq!(
            success[&key("backstop-secondary")].to_string(),
            "2026-11-24T04:00:00Z"
        );
        assert_eq!(
            index.last_failure()[&key("s3-us-west")].to_string(),
            "2026-11-20T00:00:00Z",
            "a failure without completion time counts at creation"
        );
        let counts = index.count_by_state();
        assert_eq!(counts[&(key("s3-us-west"), "Succeeded".to_owned())], 2);
        assert_eq!(counts[&(key("s3-us-west"), "Failed".to_owned())], 1);

        index.remove_backup("percona", "b");
        assert_eq!(
            index.last_success()[&key("s3-us-west")].to_string(),
            "2026-11-22T04:00:00Z"
        );
    }

    #[test]
    fn budget_ratio_is_the_newest_good_backups_age_over_the_window() {
        let mut index = BackupIndex::new();
        index.upsert_cluster(&cluster("0 4 * * *", 7));
        index.upsert_backup(&backup(
            "a",
            "s3-us-west",
            "Succeeded",
            Some("2026-11-20T04:00:00Z"),
        ));
        // A failover backup on the secondary is a good backup too.
        index.upsert_backup(&backup(
            "b",
            "backstop-secondary",
            "Succeeded",
            Some("2026-11-21T04:00:00Z"),
        ));
        let now: Timestamp = "2026-11-24T16:00:00Z".parse().unwrap();
        let slo = &index.schedule_slos(now)[0];
        assert_eq!(slo.window, Some(SignedDuration::from_hours(7 * 24)));
        assert_eq!(slo.last_success_age, Some(SignedDuration::from_hours(84)));
        assert_eq!(slo.budget_ratio, Some(0.5));
    }

    #[test]
    fn storages_are_indexed_and_changes_bump_the_generation() {
        let mut index = BackupIndex::new();
        let mut c = cluster("0 4 * * *", 7);
        c.spec.backup.as_mut().unwrap().storages = Some(
            [(
                "s3-us-west".to_owned(),
                serde_json::from_value(json!({"type": "s3", "s3": {"bucket": "b"}})).unwrap(),
            )]
            .into(),
        );
        index.upsert_cluster(&c);
        let g1 = index.storages_generation();
        index.upsert_cluster(&c);
        assert_eq!(
            index.storages_generation(),
            g1,
            "an unchanged cluster is not a change"
        );
        assert_eq!(
            index.storages()[&("percona".into(), "cluster1".into())].len(),
            1
        );
        index.remove_cluster("percona", "cluster1");
        assert!(index.storages().is_empty());
        assert!(index.storages_generation() > g1);
    }

    #[test]
    fn no_success_or_unbounded_retention_gives_no_ratio() {
        let mut index = BackupIndex::new();
        index.upsert_cluster(&cluster("0 4 * * *", 0));
        index.upsert_backup(&backup(
            "a",
            "s3-us-west",
            "Succeeded",
            Some("2026-11-20T04:00:00Z"),
        ));
        let now: Timestamp = "2026-11-24T16:00:00Z".parse().unwrap();
        assert_eq!(index.schedule_slos(now)[0].budget_ratio, None);

        let mut empty = BackupIndex::new();
        empty.upsert_cluster(&cluster("0 4 * * *", 7));
        let slo = &empty.schedule_slos(now)[0];
        assert_eq!((slo.last_success_age, slo.budget_ratio), (None, None));
        assert!(slo.window.is_some());
    }

    /// The incremental aggregates equal a recount from scratch after any sequence of
    /// upserts, state changes and removals.
    #[test]
    fn aggregates_match_a_recount_after_any_sequence() {
        let mut index = BackupIndex::new();
        let mut model: BTreeMap<String, (String, String, Option<String>)> = BTreeMap::new();
        let states = ["", "Running", "Succeeded", "Failed"];
        let mut seed = 7u64;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for step in 0..2000 {
            let name = format!("b{}", next(40));
            if next(5) == 0 {
                index.remove_backup("percona", &name);
                model.remove(&name);
                continue;
            }
            let storage = format!("s{}", next(3));
            let state = states[usize::try_from(next(4)).unwrap()];
            let completed =
                (next(3) > 0).then(|| format!("2026-11-2{}T00:00:{:02}Z", next(9), step % 60));
            index.upsert_backup(&backup(&name, &storage, state, completed.as_deref()));
            model.insert(name, (storage, state.to_owned(), completed));
        }
        let mut fresh = BackupIndex::new();
        for (name, (storage, state, completed)) in &model {
            fresh.upsert_backup(&backup(name, storage, state, completed.as_deref()));
        }
        assert_eq!(index.count_by_state(), fresh.count_by_state());
        assert_eq!(index.last_success(), fresh.last_success());
        assert_eq!(index.last_failure(), fresh.last_failure());
        assert_eq!(
            index.cluster_last_success("percona", "cluster1"),
            fresh.cluster_last_success("percona", "cluster1")
        );
        let recount: u64 = index.count_by_state().values().sum();
        assert_eq!(recount, u64::try_from(model.len()).unwrap());
        for name in model.keys() {
            index.remove_backup("percona", name);
        }
        assert!(index.count_by_state().is_empty() && index.last_success().is_empty());
        assert_eq!(index.cluster_last_success("percona", "cluster1"), None);
    }
}
