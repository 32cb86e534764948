//! A simulated Percona operator, just enough of it for Backstop to observe and act on: it is
//! an ordinary Kubernetes client, so it runs against the simulator and a real API server alike.
//!
//! Each [`SimOperator::step`]:
//! 1. creates the scheduled backups that came due (`spec.backup.schedule`), with the
//!    operator's names, labels and the `percona.com/delete-backup` finalizer;
//! 2. runs every new backup as a Job and a Pod whose log reads like the backup image's, and
//!    really uploads to the storage's S3 bucket with the credentials in its `credentialsSecret`
//!    (a filesystem storage gets a PVC from its template), so the backup succeeds or fails
//!    exactly as S3 behaves at that moment; with the operator's lock, deadlines and
//!    `release-lock` finalizer ([`lifecycle`]), and an upload to a store that never answers
//!    left `Running`, as xbcloud's would be ([`run`]);
//! 3. applies retention by count per schedule (Succeeded backups only), and removes the data
//!    of deleted backups before releasing their finalizer (deletion stalls while S3 is down).
//!
//! Time comes from a [`Clock`], so the sandbox can run schedules in accelerated time.

pub mod lifecycle;
mod retention;
mod run;
mod workload;
pub mod xbcloud;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt as _;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use backstop::clock::Clock;
use backstop::pxc::{
    self, BackupCrSpec, BackupStatus, PerconaXtraDBCluster, PerconaXtraDBClusterBackup, Schedule,
    labels, state,
};
use backstop::s3::client::{self as s3client, Endpoint, Timeouts};
use backstop::schedule::CronSchedule;

/// Why a step failed (per-backup failures are recorded on the backup, not here).
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// The API server refused a request.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// Settings of the simulated operator.
#[derive(Debug, Clone)]
pub struct OperatorOptions {
    /// Timeouts of the simulated backup Job's S3 requests. The operation timeout is a day by
    /// default: xbcloud waits on a store that accepts and never answers, so a backup to it
    /// stays `Running` until a deadline fails it or it is deleted.
    pub s3_timeouts: Timeouts,
    /// How long the step that starts a backup waits for its upload before leaving it
    /// `Running` for later steps to check. A healthy upload to the sandbox takes
    /// milliseconds, so it finishes within the step that started it.
    pub upload_wait: Duration,
}

impl Default for OperatorOptions {
    fn default() -> Self {
        Self {
            s3_timeouts: Timeouts {
                connect: Duration::from_secs(2),
                operation: Duration::from_secs(24 * 3600),
            },
            upload_wait: Duration::from_secs(5),
        }
    }
}

/// What one step did, by backup name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StepReport {
    /// Scheduled backups created.
    pub scheduled: Vec<String>,
    /// Backups that ran and succeeded.
    pub succeeded: Vec<String>,
    /// Backups that ran and failed.
    pub failed: Vec<String>,
    /// Backups deleted by retention.
    pub retired: Vec<String>,
    /// Backups whose data was removed and finalizer released.
    pub purged: Vec<String>,
    /// New backups waiting for the cluster's backup lock.
    pub waiting: Vec<String>,
    /// Backups still running after the step (an upload not finished, or retried).
    pub running: Vec<String>,
    /// Deleted backups whose upload was stopped, Job removed and lock released.
    pub released: Vec<String>,
}

/// The simulated operator.
pub struct SimOperator {
    client: kube::Client,
    clock: Arc<dyn Clock>,
    options: OperatorOptions,
    /// When each schedule (`ns/cluster/schedule`) last fired.
    last_fired: Mutex<HashMap<String, Timestamp>>,
    /// Uploads under way, by backup (`ns/name/uid`).
    in_flight: Mutex<HashMap<String, run::InFlight>>,
    /// When this operator first saw each new backup (its clock; the starting deadline).
    first_seen: Mutex<HashMap<String, Timestamp>>,
}

impl SimOperator {
    /// An operator acting through `client`, on `clock`'s time.
    pub fn new(client: kube::Client, clock: Arc<dyn Clock>, options: OperatorOptions) -> Self {
        Self {
            client,
            clock,
            options,
            last_fired: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            first_seen: Mutex::new(HashMap::new()),
        }
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<String, run::InFlight>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// When this operator first saw `backup` new (its clock), remembering `now` if never.
    fn first_seen(&self, backup: &PerconaXtraDBClusterBackup, now: Timestamp) -> Timestamp {
        let key = format!(
            "{}/{}",
            backup.namespace().unwrap_or_default(),
            backup.metadata.uid.as_deref().unwrap_or_default()
        );
        *self
            .first_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_insert(now)
    }

    /// Steps every `every` until `shutdown`; errors are logged and the next step retries.
    pub async fn run(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    if let Err(e) = self.step().await {
                        tracing::warn!(error = %e, "simulated operator step failed");
                    }
                }
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// One pass over every cluster and backup.
    pub async fn step(&self) -> Result<StepReport, OperatorError> {
        let mut report = StepReport::default();
        let clusters: Api<PerconaXtraDBCluster> = Api::all(self.client.clone());
        let clusters = clusters.list(&ListParams::default()).await?.items;
        for cluster in &clusters {
            self.schedule_due(cluster, &mut report).await?;
        }
        let backups: Api<PerconaXtraDBClusterBackup> = Api::all(self.client.clone());
        for backup in backups.list(&ListParams::default()).await?.items {
            if backup.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let cluster = clusters.iter().find(|c| {
                c.namespace() == backup.namespace() && c.name_any() == backup.spec.pxc_cluster
            });
            self.advance(&backup, cluster, &mut report).await?;
        }
        for cluster in &clusters {
            self.apply_retention(cluster, &mut report).await?;
        }
        // Deleted backups, retention's included: the lock's finalizer, then the data's.
        for backup in backups.list(&ListParams::default()).await?.items {
            if backup.metadata.deletion_timestamp.is_some()
                && lifecycle::has_finalizer(&backup, lifecycle::RELEASE_LOCK_FINALIZER)
            {
                self.release_deleted(&backup, &mut report).await?;
            }
        }
        self.purge_deleted(&mut report).await?;
        Ok(report)
    }

    async fn schedule_due(
        &self,
        cluster: &PerconaXtraDBCluster,
        report: &mut StepReport,
    ) -> Result<(), OperatorError> {
        let ns = cluster.namespace().unwrap_or_default();
        let name = cluster.name_any();
        let now = self.clock.now();
        let schedules = cluster.schedules().to_vec();
        for schedule in schedules {
            let key = format!("{ns}/{name}/{}", schedule.name);
            let Ok(cron) = CronSchedule::parse(&schedule.schedule) else {
                tracing::warn!(%key, expr = %schedule.schedule, "unparseable schedule ignored");
                continue;
            };
            let last = {
                let mut fired = self
                    .last_fired
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                // A schedule seen for the first time starts now: no backlog of missed runs.
                *fired.entry(key.clone()).or_insert(now)
            };
            // Missed runs collapse into the latest one, as a cron scheduler that was busy.
            let Some(due) = cron.between(last, now, 100_000).last().copied() else {
                continue;
            };
            self.last_fired
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key, due);
            let backup = scheduled_backup(&ns, &name, &schedule, due);
            let backup_name = backup.name_any();
            let api: Api<PerconaXtraDBClusterBackup> = Api::namespaced(self.client.clone(), &ns);
            match api.create(&PostParams::default(), &backup).await {
                Ok(_) => report.scheduled.push(backup_name),
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// The label that groups a schedule's backups for retention: a short hash of the cluster
/// followed by the schedule's name (the operator keys its cron jobs the same way).
pub fn ancestor(namespace: &str, cluster: &str, schedule: &str) -> String {
    let hash = crc32fast::hash(format!("{namespace}/{cluster}").as_bytes());
    format!("{:08x}-{schedule}", hash)
}

fn scheduled_backup(
    ns: &str,
    cluster: &str,
    schedule: &Schedule,
    due: Timestamp,
) -> PerconaXtraDBClusterBackup {
    let name = pxc::scheduled_backup_name(cluster, &schedule.storage_name, &schedule.schedule, due);
    let labels: BTreeMap<String, String> = [
        (labels::BACKUP_TYPE, "cron"),
        (labels::CLUSTER, cluster),
        (
            labels::BACKUP_ANCESTOR,
            &ancestor(ns, cluster, &schedule.name),
        ),
        ("app.kubernetes.io/instance", cluster),
        (
            "app.kubernetes.io/managed-by",
            "percona-xtradb-cluster-operator",
        ),
        ("app.kubernetes.io/name", "percona-xtradb-cluster"),
        ("app.kubernetes.io/part-of", "percona-xtradb-cluster"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let mut backup = PerconaXtraDBClusterBackup::new(
        &name,
        BackupCrSpec {
            pxc_cluster: cluster.to_owned(),
            storage_name: Some(schedule.storage_name.clone()),
            ..BackupCrSpec::default()
        },
    );
    backup.metadata.namespace = Some(ns.to_owned());
    backup.metadata.labels = Some(labels);
    let mut finalizers = vec![lifecycle::RELEASE_LOCK_FINALIZER.to_owned()];
    if schedule.delete_from_storage() {
        finalizers.push(pxc::DELETE_BACKUP_FINALIZER.to_owned());
    }
    backup.metadata.finalizers = Some(finalizers);
    backup
}

pub(super) async fn create_ignoring_conflict<K>(
    api: &Api<K>,
    object: &K,
) -> Result<(), OperatorError>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn patch_status(
    api: &Api<PerconaXtraDBClusterBackup>,
    name: &str,
    status: &BackupStatus,
) -> Result<(), OperatorError> {
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await?;
    Ok(())
}
