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

/// The annotations the index keeps: those opt-in is decided from (Backstop's journal and
/// intent change on every step and would make the prober work its targets out again).
const OPT_IN_ANNOTATIONS: [&str; 4] = [
    crate::managed::MANAGED_ANNOTATION,
    crate::managed::FAILOVER_ANNOTATION,
    crate::managed::STRATEGY_ANNOTATION,
    crate::managed::STORAGE_ANNOTATION,
];

/// A cluster's labels and Backstop annotations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterMetadata {
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its opt-in annotations.
    pub annotations: BTreeMap<String, String>,
}

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
    /// `spec.backup.allowParallel`, `true` when unset (the operator's default).
    allow_parallel: bool,
    seen: Epoch,
}

/// A backup not finished yet (`New`, `Starting`, `Running`, ...): its storage, state and
/// creation time. Few at any time, so kept apart from the slots and scanned at scrape.
#[derive(Debug, Clone, Copy)]
struct Unfinished {
    storage: Id,
    state: u16,
    created_ms: i64,
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

/// Clusters, backups and backup Jobs.
#[derive(Debug, Default)]
pub struct BackupIndex {
    ids: ObjectIds,
    backups: HashMap<ObjectId, BackupSlot, IdHasher>,
    aggregates: RefTable<StorageKey, Aggregate>,
    states: Vec<Box<str>>,
    clusters: BTreeMap<(String, String), ClusterView>,
    storages: BTreeMap<(String, String), BTreeMap<String, Storage>>,
    /// Each cluster's labels and Backstop annotations: what opt-in is decided from
    /// (`responder::opt_in`), so the prober probes the secondaries of opted-in clusters.
    metadata: BTreeMap<(String, String), ClusterMetadata>,
    generation: u64,
    jobs: HashMap<ObjectId, JobSlot, IdHasher>,
    job_clusters: RefTable<(String, String), [u64; 3]>,
    unfinished: HashMap<ObjectId, Unfinished, IdHasher>,
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
        let created_ms = backup
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_millisecond());
        match created_ms {
            Some(created_ms) if state != state::SUCCEEDED && state != state::FAILED => {
                self.unfinished.insert(
                    id,
                    Unfinished {
                        storage: slot.storage,
                        state: slot.state,
                        created_ms,
                    },
                );
            }
            _ => {
                self.unfinished.remove(&id);
            }
        }
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
        let id = self.ids.of(namespace, name);
        self.unfinished.remove(&id);
        if let Some(old) = self.backups.remove(&id) {
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
        let backups = &self.backups;
        self.unfinished.retain(|id, _| backups.contains_key(id));
    }

    /// How many backups the index holds.
    pub fn backup_count(&self) -> usize {
        self.backups.len()
    }

    /// Each cluster's labels and Backstop annotations, by `(namespace, name)`.
    pub fn cluster_metadata(&self) -> &BTreeMap<(String, String), ClusterMetadata> {
        &self.metadata
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
        let metadata = ClusterMetadata {
            labels: cluster.labels().clone(),
            annotations: cluster
                .annotations()
                .iter()
                .filter(|(k, _)| OPT_IN_ANNOTATIONS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        if self.metadata.get(&key) != Some(&metadata) {
            self.generation += 1;
        }
        self.metadata.insert(key.clone(), metadata);
        let allow_parallel = cluster
            .spec
            .backup
            .as_ref()
            .and_then(|b| b.allow_parallel)
            .unwrap_or(true);
        self.clusters.insert(
            key,
            ClusterView {
                schedules,
                allow_parallel,
                seen,
            },
        );
    }

    /// Forgets a deleted cluster.
    pub fn remove_cluster(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        self.clusters.remove(&key);
        self.metadata.remove(&key);
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
}

mod views;
pub use views::{JobCount, ScheduleSlo, StorageView};

#[cfg(test)]
mod tests;
