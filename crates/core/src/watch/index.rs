//! The backup index: the current clusters and backups as plain data. Watch events update it,
//! metrics read it at scrape time, and it does no I/O, so every rule here is tested with values.
//!
//! SLO rule: a cluster is as safe as its newest successful backup, on whatever storage (a
//! backup written to the secondary during a failover counts). For each schedule, the budget
//! ratio is the age of that backup divided by the schedule's retention window; at 1 the
//! outage has outlived the window and the oldest kept backups are older than the newest good
//! one.
//!
//! Size: a cluster can hold hundreds of thousands of backups, so each backup costs one
//! 32-byte entry (an [`ObjectId`] instead of its name, a storage id, a state id, one time in
//! milliseconds and the list it was last seen in); everything a scrape reads is kept per
//! storage, updated on every change. Times are kept to the millisecond, the precision the
//! metrics export.

use std::collections::{BTreeMap, HashMap};

use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt as _;

use crate::pxc::{PerconaXtraDBCluster, PerconaXtraDBClusterBackup, Storage, state};
use crate::schedule::CronSchedule;
use crate::watch::object_id::{IdHasher, ObjectId, ObjectIds};
use crate::watch::reftable::{Id, RefTable};
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

/// Which list of a watch last saw an object. A watch moves to the [`Epoch::next`] each time
/// it (re)lists and tags every object it delivers with it; when the list is complete, objects
/// of its scope still tagged with an older epoch were deleted while the watch was down, and
/// the sweep removes them. Each watch counts its own lists, so a stale tag could look current
/// only after 65,535 lists in a row of that one watch broke off before completing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Epoch(u16);

impl Epoch {
    /// The epoch of the next list.
    #[must_use]
    pub fn next(self) -> Self {
        Self(self.0.wrapping_add(1))
    }
}

/// A millisecond time that is not there.
const NO_TIME: i64 = i64::MIN;

/// What the index keeps of a backup: enough to take back its contribution to the aggregates.
#[derive(Debug, Clone, Copy)]
struct BackupSlot {
    /// Completion time of a Succeeded backup, failure time of a Failed one, else [`NO_TIME`].
    time_ms: i64,
    /// The storage, which also says the namespace.
    storage: Id,
    state: u16,
    seen: Epoch,
}

/// What the index keeps of a cluster's schedule. The shortest gap between runs is computed
/// once, when the schedule is seen, not at every scrape: it walks up to a year of runs.
#[derive(Debug, Clone)]
struct ScheduleView {
    name: String,
    gap: Option<SignedDuration>,
    count: Option<i64>,
}

#[derive(Debug, Clone)]
struct ClusterView {
    schedules: Vec<ScheduleView>,
    seen: Epoch,
}

/// Per-storage aggregates, kept up to date on every upsert and removal so a scrape reads
/// them without walking every backup. Times are sorted multisets, so removing a backup
/// removes exactly its contribution and the newest is the last element.
#[derive(Debug, Default)]
struct Aggregate {
    by_state: Vec<(u16, u64)>,
    successes: Vec<i64>,
    failures: Vec<i64>,
}

fn add_time(times: &mut Vec<i64>, t: i64) {
    // Backups mostly arrive oldest first, so this is usually an append.
    let at = times.partition_point(|&x| x <= t);
    times.insert(at, t);
}

fn remove_time(times: &mut Vec<i64>, t: i64) {
    if let Ok(at) = times.binary_search(&t) {
        times.remove(at);
    }
}

/// The three states of a backup Job, in the order [`JobSlot::state`] indexes them.
const JOB_STATES: [&str; 3] = ["active", "succeeded", "failed"];

/// What the index keeps of a backup Job: its cluster and where it is.
#[derive(Debug, Clone, Copy)]
struct JobSlot {
    /// The `(namespace, cluster)`.
    cluster: Id,
    state: u8,
    seen: Epoch,
}

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

/// Clusters, backups and backup Jobs.
#[derive(Debug, Default)]
pub struct BackupIndex {
    ids: ObjectIds,
    backups: HashMap<ObjectId, BackupSlot, IdHasher>,
    aggregates: RefTable<StorageKey, Aggregate>,
    states: Vec<Box<str>>,
    clusters: BTreeMap<(String, String), ClusterView>,
    storages: BTreeMap<(String, String), BTreeMap<String, Storage>>,
    generation: u64,
    jobs: HashMap<ObjectId, JobSlot, IdHasher>,
    job_clusters: RefTable<(String, String), [u64; 3]>,
}

/// The state of a Job from its status: `failed` once it has a Failed condition (the backoff
/// limit is spent), `succeeded` with a Complete condition, else `active`.
pub fn job_state(job: &k8s_openapi::api::batch::v1::Job) -> &'static str {
    JOB_STATES[usize::from(job_state_index(job))]
}

fn job_state_index(job: &k8s_openapi::api::batch::v1::Job) -> u8 {
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
        2
    } else if has("Complete") {
        1
    } else {
        0
    }
}

fn millis(text: Option<&str>) -> Option<i64> {
    text.and_then(|t| t.parse::<Timestamp>().ok())
        .map(Timestamp::as_millisecond)
}

fn timestamp(ms: i64) -> Option<Timestamp> {
    Timestamp::from_millisecond(ms).ok()
}

/// Removes the entries `stale` picks from `map` and returns them, so their contributions can
/// be taken back.
fn drain_stale<S: Copy>(
    map: &mut HashMap<ObjectId, S, IdHasher>,
    mut stale: impl FnMut(&S) -> bool,
) -> Vec<S> {
    let mut gone = Vec::new();
    map.retain(|_, slot| {
        let drop = stale(slot);
        if drop {
            gone.push(*slot);
        }
        !drop
    });
    gone
}

/// Adds (or with `add` false, removes) one backup's contribution to its storage's aggregate.
fn account(aggregate: &mut Aggregate, states: &[Box<str>], slot: &BackupSlot, add: bool) {
    let at = aggregate
        .by_state
        .iter()
        .position(|(s, _)| *s == slot.state);
    match (at, add) {
        (Some(i), true) => aggregate.by_state[i].1 += 1,
        (None, true) => aggregate.by_state.push((slot.state, 1)),
        (Some(i), false) => {
            aggregate.by_state[i].1 -= 1;
            if aggregate.by_state[i].1 == 0 {
                aggregate.by_state.swap_remove(i);
            }
        }
        (None, false) => {}
    }
    if slot.time_ms == NO_TIME {
        return;
    }
    let times = match states.get(usize::from(slot.state)).map(|s| &**s) {
        Some(state::SUCCEEDED) => &mut aggregate.successes,
        Some(state::FAILED) => &mut aggregate.failures,
        _ => return,
    };
    if add {
        add_time(times, slot.time_ms);
    } else {
        remove_time(times, slot.time_ms);
    }
}

impl BackupIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// The id of a state name. States are the operator's handful of words; should a cluster
    /// ever hold more than 65,535 distinct ones, the rest share the last id.
    fn state_id(&mut self, name: &str) -> u16 {
        if let Some(i) = self.states.iter().position(|s| &**s == name) {
            return u16::try_from(i).unwrap_or(u16::MAX);
        }
        if self.states.len() > usize::from(u16::MAX) {
            return u16::MAX;
        }
        self.states.push(name.into());
        u16::try_from(self.states.len() - 1).unwrap_or(u16::MAX)
    }

    /// Records a backup as it is now, as seen by the list or watch of `seen`.
    pub fn upsert_backup(&mut self, backup: &PerconaXtraDBClusterBackup, seen: Epoch) {
        let status = backup.status.as_ref();
        let state = status.and_then(|s| s.state.as_deref()).unwrap_or_default();
        let storage = status
            .and_then(|s| s.storage_name.as_deref())
            .or(backup.spec.storage_name.as_deref())
            .unwrap_or_default();
        let namespace = backup.namespace().unwrap_or_default();
        let completed = millis(status.and_then(|s| s.completed.as_deref()));
        let time_ms = match state {
            state::SUCCEEDED => completed,
            // Failed backups often have no completion time; their creation time stands in.
            state::FAILED => completed.or_else(|| {
                backup
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.as_millisecond())
            }),
            _ => None,
        };
        let slot = BackupSlot {
            time_ms: time_ms.unwrap_or(NO_TIME),
            storage: self.aggregates.acquire(StorageKey {
                namespace: namespace.clone(),
                cluster: backup.spec.pxc_cluster.clone(),
                storage: storage.to_owned(),
            }),
            state: self.state_id(if state.is_empty() { "New" } else { state }),
            seen,
        };
        if let Some(aggregate) = self.aggregates.value_mut(slot.storage) {
            account(aggregate, &self.states, &slot, true);
        }
        let id = self.ids.of(&namespace, &backup.name_any());
        if let Some(old) = self.backups.insert(id, slot) {
            self.forget_backup(&old);
        }
    }

    fn forget_backup(&mut self, old: &BackupSlot) {
        if let Some(aggregate) = self.aggregates.value_mut(old.storage) {
            account(aggregate, &self.states, old, false);
        }
        self.aggregates.release(old.storage);
    }

    /// Forgets a deleted backup.
    pub fn remove_backup(&mut self, namespace: &str, name: &str) {
        if let Some(old) = self.backups.remove(&self.ids.of(namespace, name)) {
            self.forget_backup(&old);
        }
    }

    /// Forgets every backup in `scope` (a namespace, or all) not seen since `epoch` began:
    /// the end of a list.
    pub fn sweep_backups(&mut self, scope: Option<&str>, epoch: Epoch) {
        let aggregates = &self.aggregates;
        let gone = drain_stale(&mut self.backups, |slot| {
            slot.seen != epoch
                && scope.is_none_or(|ns| {
                    aggregates
                        .key(slot.storage)
                        .is_some_and(|k| k.namespace == ns)
                })
        });
        for old in gone {
            self.forget_backup(&old);
        }
    }

    /// How many backups the index holds.
    pub fn backup_count(&self) -> usize {
        self.backups.len()
    }

    /// Records a cluster's schedules and storages as they are now.
    pub fn upsert_cluster(&mut self, cluster: &PerconaXtraDBCluster, seen: Epoch) {
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
        self.clusters.insert(key, ClusterView { schedules, seen });
    }

    /// Forgets a deleted cluster.
    pub fn remove_cluster(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        self.clusters.remove(&key);
        if self.storages.remove(&key).is_some() {
            self.generation += 1;
        }
    }

    /// Forgets every cluster in `scope` not seen since `epoch` began.
    pub fn sweep_clusters(&mut self, scope: Option<&str>, epoch: Epoch) {
        let gone: Vec<(String, String)> = self
            .clusters
            .iter()
            .filter(|((ns, _), view)| view.seen != epoch && scope.is_none_or(|s| s == ns))
            .map(|(key, _)| key.clone())
            .collect();
        for (ns, name) in gone {
            self.remove_cluster(&ns, &name);
        }
    }

    /// Records a backup Job as it is now.
    pub fn upsert_job(&mut self, job: &k8s_openapi::api::batch::v1::Job, seen: Epoch) {
        let namespace = job.namespace().unwrap_or_default();
        let cluster = job
            .labels()
            .get(crate::pxc::labels::CLUSTER)
            .cloned()
            .unwrap_or_default();
        let slot = JobSlot {
            cluster: self.job_clusters.acquire((namespace.clone(), cluster)),
            state: job_state_index(job),
            seen,
        };
        if let Some(counts) = self.job_clusters.value_mut(slot.cluster) {
            counts[usize::from(slot.state)] += 1;
        }
        let id = self.ids.of(&namespace, &job.name_any());
        if let Some(old) = self.jobs.insert(id, slot) {
            self.forget_job(&old);
        }
    }

    fn forget_job(&mut self, old: &JobSlot) {
        if let Some(counts) = self.job_clusters.value_mut(old.cluster) {
            counts[usize::from(old.state)] -= 1;
        }
        self.job_clusters.release(old.cluster);
    }

    /// Forgets a deleted Job.
    pub fn remove_job(&mut self, namespace: &str, name: &str) {
        if let Some(old) = self.jobs.remove(&self.ids.of(namespace, name)) {
            self.forget_job(&old);
        }
    }

    /// Forgets every Job in `scope` not seen since `epoch` began.
    pub fn sweep_jobs(&mut self, scope: Option<&str>, epoch: Epoch) {
        let clusters = &self.job_clusters;
        let gone = drain_stale(&mut self.jobs, |slot| {
            slot.seen != epoch
                && scope.is_none_or(|ns| {
                    clusters
                        .key(slot.cluster)
                        .is_some_and(|(namespace, _)| namespace == ns)
                })
        });
        for old in gone {
            self.forget_job(&old);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const E: Epoch = Epoch(0);

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
        index.upsert_backup(
            &backup("a", "s3-us-west", "Succeeded", Some("2026-11-22T04:00:00Z")),
            E,
        );
        index.upsert_backup(
            &backup("b", "s3-us-west", "Succeeded", Some("2026-11-23T04:00:00Z")),
            E,
        );
        index.upsert_backup(&backup("c", "s3-us-west", "Failed", None), E);
        index.upsert_backup(
            &backup(
                "d",
                "backstop-secondary",
                "Succeeded",
                Some("2026-11-24T04:00:00Z"),
            ),
            E,
        );
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
        index.upsert_cluster(&cluster("0 4 * * *", 7), E);
        index.upsert_backup(
            &backup("a", "s3-us-west", "Succeeded", Some("2026-11-20T04:00:00Z")),
            E,
        );
        // A failover backup on the secondary is a good backup too.
        index.upsert_backup(
            &backup(
                "b",
                "backstop-secondary",
                "Succeeded",
                Some("2026-11-21T04:00:00Z"),
            ),
            E,
        );
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
        index.upsert_cluster(&c, E);
        let g1 = index.storages_generation();
        index.upsert_cluster(&c, E);
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
        index.upsert_cluster(&cluster("0 4 * * *", 0), E);
        index.upsert_backup(
            &backup("a", "s3-us-west", "Succeeded", Some("2026-11-20T04:00:00Z")),
            E,
        );
        let now: Timestamp = "2026-11-24T16:00:00Z".parse().unwrap();
        assert_eq!(index.schedule_slos(now)[0].budget_ratio, None);

        let mut empty = BackupIndex::new();
        empty.upsert_cluster(&cluster("0 4 * * *", 7), E);
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
            index.upsert_backup(&backup(&name, &storage, state, completed.as_deref()), E);
            model.insert(name, (storage, state.to_owned(), completed));
        }
        let mut fresh = BackupIndex::new();
        for (name, (storage, state, completed)) in &model {
            fresh.upsert_backup(&backup(name, storage, state, completed.as_deref()), E);
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

    fn in_namespace(mut b: PerconaXtraDBClusterBackup, ns: &str) -> PerconaXtraDBClusterBackup {
        b.metadata.namespace = Some(ns.to_owned());
        b
    }

    /// A relist removes exactly the objects of its own scope that it did not deliver, even
    /// when an earlier list broke off half way.
    #[test]
    fn a_sweep_removes_what_its_list_did_not_deliver_in_its_scope_only() {
        let mut index = BackupIndex::new();
        let first = Epoch::default().next();
        for (name, ns) in [("a", "percona"), ("b", "percona"), ("c", "other")] {
            let b = backup(name, "s3", "Succeeded", Some("2026-11-22T04:00:00Z"));
            index.upsert_backup(&in_namespace(b, ns), first);
        }
        index.sweep_backups(None, first);
        assert_eq!(
            index.backup_count(),
            3,
            "a complete list keeps all it delivered"
        );

        // A relist of "percona" that breaks off after delivering "a", then starts again and
        // delivers only "a": "b" was deleted meanwhile. "other" is another watch's scope.
        let broken = first.next();
        let a = backup("a", "s3", "Succeeded", Some("2026-11-22T04:00:00Z"));
        index.upsert_backup(&a, broken);
        let again = broken.next();
        index.upsert_backup(&a, again);
        index.sweep_backups(Some("percona"), again);
        assert_eq!(index.backup_count(), 2);
        let counts = index.count_by_state();
        let key = |ns: &str| StorageKey {
            namespace: ns.into(),
            cluster: "cluster1".into(),
            storage: "s3".into(),
        };
        assert_eq!(counts[&(key("percona"), "Succeeded".to_owned())], 1);
        assert_eq!(counts[&(key("other"), "Succeeded".to_owned())], 1);

        // A namespace whose name prefixes another's is a different scope.
        let b = in_namespace(backup("d", "s3", "Failed", None), "percona-2");
        index.upsert_backup(&b, first);
        index.sweep_backups(Some("percona"), again);
        assert_eq!(
            index.backup_count(),
            3,
            "percona-2 is not in percona's scope"
        );
        index.sweep_backups(Some("percona-2"), again);
        assert_eq!(index.backup_count(), 2);
        assert!(
            index.last_failure().is_empty(),
            "its contribution is gone with it"
        );
    }

    fn job(name: &str, cluster: &str, condition: Option<&str>) -> k8s_openapi::api::batch::v1::Job {
        let conditions: Vec<_> = condition
            .map(|c| json!({"type": c, "status": "True"}))
            .into_iter()
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "percona",
                "labels": {"percona.com/cluster": cluster}},
            "status": {"conditions": conditions},
        }))
        .unwrap()
    }

    #[test]
    fn jobs_are_counted_per_cluster_and_state_through_changes_and_sweeps() {
        let mut index = BackupIndex::new();
        let e = Epoch::default().next();
        index.upsert_job(&job("j1", "cluster1", None), e);
        index.upsert_job(&job("j2", "cluster1", Some("Failed")), e);
        index.upsert_job(&job("j3", "cluster2", Some("Complete")), e);
        index.upsert_job(&job("j1", "cluster1", Some("Complete")), e);
        let counts: Vec<_> = index
            .jobs_by_state()
            .iter()
            .map(|j| (j.cluster.to_owned(), j.state, j.count))
            .collect();
        assert_eq!(
            counts,
            [
                ("cluster1".to_owned(), "failed", 1),
                ("cluster1".to_owned(), "succeeded", 1),
                ("cluster2".to_owned(), "succeeded", 1)
            ]
        );
        index.remove_job("percona", "j2");
        let relist = e.next();
        index.upsert_job(&job("j1", "cluster1", Some("Complete")), relist);
        index.sweep_jobs(Some("percona"), relist);
        let counts: Vec<_> = index
            .jobs_by_state()
            .iter()
            .map(|j| (j.cluster.to_owned(), j.state, j.count))
            .collect();
        assert_eq!(counts, [("cluster1".to_owned(), "succeeded", 1)]);
    }

    #[test]
    fn a_cluster_sweep_forgets_its_schedules_and_storages() {
        let mut index = BackupIndex::new();
        let e = Epoch::default().next();
        index.upsert_cluster(&cluster("0 4 * * *", 7), e);
        let g = index.storages_generation();
        let relist = e.next();
        index.sweep_clusters(Some("elsewhere"), relist);
        assert_eq!(index.schedule_slos(Timestamp::now()).len(), 1);
        index.sweep_clusters(Some("percona"), relist);
        assert!(index.schedule_slos(Timestamp::now()).is_empty());
        assert!(index.storages().is_empty() && index.storages_generation() > g);
    }
}
