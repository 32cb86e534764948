//! A simulated Percona operator, just enough of it for Backstop to observe and act on: it is
//! an ordinary Kubernetes client, so it runs against the simulator and a real API server alike.
//!
//! Each [`SimOperator::step`]:
//! 1. creates the scheduled backups that came due (`spec.backup.schedule`), with the
//!    operator's names, labels and the `percona.com/delete-backup` finalizer;
//! 2. runs every new backup as a Job and a Pod whose log reads like the backup image's, and
//!    really uploads to the storage's S3 bucket with the credentials in its `credentialsSecret`
//!    (a filesystem storage gets a PVC from its template), so the backup succeeds or fails
//!    exactly as S3 behaves at that moment;
//! 3. applies retention by count per schedule (Succeeded backups only), and removes the data
//!    of deleted backups before releasing their finalizer (deletion stalls while S3 is down).
//!
//! Time comes from a [`Clock`], so the sandbox can run schedules in accelerated time.

mod retention;
pub mod xbcloud;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use kube::ResourceExt as _;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::kube::api::POD_LOG_ANNOTATION;
use backstop::clock::Clock;
use backstop::pxc::{
    self, BackupCrSpec, BackupStatus, PerconaXtraDBCluster, PerconaXtraDBClusterBackup, Schedule,
    Storage, labels, state,
};
use backstop::s3::client::{self as s3client, Endpoint, Timeouts};
use backstop::schedule::CronSchedule;
use xbcloud::UploadFailure;

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
    /// Timeouts of the simulated backup Job's S3 requests.
    pub s3_timeouts: Timeouts,
}

impl Default for OperatorOptions {
    fn default() -> Self {
        Self {
            s3_timeouts: Timeouts {
                connect: Duration::from_secs(2),
                operation: Duration::from_secs(5),
            },
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
}

/// The simulated operator.
pub struct SimOperator {
    client: kube::Client,
    clock: Arc<dyn Clock>,
    options: OperatorOptions,
    /// When each schedule (`ns/cluster/schedule`) last fired.
    last_fired: Mutex<HashMap<String, Timestamp>>,
}

impl SimOperator {
    /// An operator acting through `client`, on `clock`'s time.
    pub fn new(client: kube::Client, clock: Arc<dyn Clock>, options: OperatorOptions) -> Self {
        Self {
            client,
            clock,
            options,
            last_fired: Mutex::new(HashMap::new()),
        }
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
            let new = backup
                .status
                .as_ref()
                .and_then(|s| s.state.as_deref())
                .unwrap_or_default()
                .is_empty();
            if new && backup.metadata.deletion_timestamp.is_none() {
                self.run_backup(&backup, &mut report).await?;
            }
        }
        for cluster in &clusters {
            self.apply_retention(cluster, &mut report).await?;
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

    async fn run_backup(
        &self,
        backup: &PerconaXtraDBClusterBackup,
        report: &mut StepReport,
    ) -> Result<(), OperatorError> {
        let ns = backup.namespace().unwrap_or_default();
        let name = backup.name_any();
        let cluster_name = backup.spec.pxc_cluster.clone();
        let storage_name = backup.spec.storage_name.clone().unwrap_or_default();
        let backups: Api<PerconaXtraDBClusterBackup> = Api::namespaced(self.client.clone(), &ns);
        let now = self.clock.now();

        let clusters: Api<PerconaXtraDBCluster> = Api::namespaced(self.client.clone(), &ns);
        let storage = clusters
            .get_opt(&cluster_name)
            .await?
            .and_then(|c| c.spec.backup)
            .and_then(|b| b.storages)
            .and_then(|mut s| s.remove(&storage_name));
        let Some(storage) = storage else {
            let status = BackupStatus {
                state: Some(state::FAILED.into()),
                error: Some(format!(
                    "storage {storage_name:?} of cluster {cluster_name:?} not found"
                )),
                storage_name: Some(storage_name),
                ..BackupStatus::default()
            };
            patch_status(&backups, &name, &status).await?;
            report.failed.push(name);
            return Ok(());
        };

        let job_name = pxc::backup_job_name(&name);
        let (job, pod) = job_and_pod(&ns, &cluster_name, &name, &job_name);
        create_ignoring_conflict(&Api::<Job>::namespaced(self.client.clone(), &ns), &job).await?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let pod = pods.create(&PostParams::default(), &pod).await?;
        let running = BackupStatus {
            state: Some(state::RUNNING.into()),
            storage_name: Some(storage_name.clone()),
            storage_type: storage.kind.clone(),
            ..BackupStatus::default()
        };
        patch_status(&backups, &name, &running).await?;

        // The operator names the destination after the CR's creation time; the simulated
        // operator runs a backup in the step that creates it, so "now" on its clock is that time
        // (the API server's creationTimestamp follows the wall clock, not an accelerated one).
        let dir = pxc::backup_dir_name(&cluster_name, now);
        let stamp = now.strftime("%y%m%d %H:%M:%S").to_string();
        let outcome = self
            .execute(&ns, &name, &storage, (&cluster_name, now), &dir, &stamp)
            .await?;
        let succeeded = outcome.failure.is_none();

        // The pod's log and phase, then the Job's status, then the backup's: the order the
        // real operator observes them in.
        pods.patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {POD_LOG_ANNOTATION: outcome.log}}})),
        )
        .await?;
        let phase = if succeeded { "Succeeded" } else { "Failed" };
        pods.patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": phase}})),
        )
        .await?;
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &ns);
        let condition = if succeeded { "Complete" } else { "Failed" };
        let counts = if succeeded {
            json!({"succeeded": 1})
        } else {
            json!({"failed": 1})
        };
        let mut job_status = json!({"conditions": [{"type": condition, "status": "True",
            "lastTransitionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()}]});
        if let (Some(s), Some(c)) = (job_status.as_object_mut(), counts.as_object()) {
            s.extend(c.clone());
        }
        jobs.patch_status(
            &job_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": job_status})),
        )
        .await?;

        let status = BackupStatus {
            state: Some(
                if succeeded {
                    state::SUCCEEDED
                } else {
                    state::FAILED
                }
                .into(),
            ),
            completed: succeeded.then(|| now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
            destination: Some(outcome.destination),
            storage_name: Some(storage_name),
            storage_type: storage.kind.clone(),
            s3: storage.s3.clone(),
            error: outcome.failure.as_ref().map(UploadFailure::status_error),
            ..BackupStatus::default()
        };
        patch_status(&backups, &name, &status).await?;
        if succeeded {
            report.succeeded.push(name);
        } else {
            report.failed.push(name);
        }
        Ok(())
    }

    async fn execute(
        &self,
        ns: &str,
        backup: &str,
        storage: &Storage,
        (cluster, at): (&str, Timestamp),
        dir: &str,
        stamp: &str,
    ) -> Result<Outcome, OperatorError> {
        match (storage.kind.as_deref(), &storage.s3) {
            (Some(pxc::STORAGE_S3), Some(s3)) => {
                let endpoint = Endpoint::of_storage(s3);
                let endpoint_text = s3
                    .endpoint_url
                    .clone()
                    .unwrap_or_else(|| format!("s3.{}.amazonaws.com", endpoint.region));
                let credentials = self.credentials(ns, s3).await?;
                let failure = match credentials {
                    None => Some(UploadFailure::Service {
                        code: "InvalidAccessKeyId".into(),
                        message: "credentials secret missing or incomplete".into(),
                    }),
                    Some(credentials) => {
                        let client =
                            s3client::client(&endpoint, &credentials, self.options.s3_timeouts);
                        upload(
                            &client,
                            s3.bucket_name(),
                            &format!("{}{dir}", s3.prefix()),
                            &endpoint_text,
                        )
                        .await
                    }
                };
                Ok(Outcome {
                    destination: pxc::s3_destination(&s3.bucket, cluster, at),
                    log: xbcloud::job_log(
                        stamp,
                        s3.bucket_name(),
                        &endpoint.region,
                        &endpoint_text,
                        dir,
                        failure.as_ref(),
                    ),
                    failure,
                })
            }
            (Some(pxc::STORAGE_FILESYSTEM), _) => {
                let pvc_name = pxc::backup_job_name(backup);
                let template = storage
                    .volume
                    .as_ref()
                    .and_then(|v| v.get("persistentVolumeClaim"))
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
                    "metadata": {"name": pvc_name, "namespace": ns},
                    "spec": template,
                }))
                .unwrap_or_default();
                create_ignoring_conflict(
                    &Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), ns),
                    &pvc,
                )
                .await?;
                Ok(Outcome {
                    destination: format!("pvc/{pvc_name}"),
                    log: format!(
                        "{stamp} [INFO] Backup to pvc/{pvc_name} started\n{stamp} completed OK!\n"
                    ),
                    failure: None,
                })
            }
            (kind, _) => {
                let failure =
                    UploadFailure::Other(format!("storage type {kind:?} is not simulated"));
                Ok(Outcome {
                    destination: String::new(),
                    log: format!("{stamp} [ERROR] {}\n", failure.status_error()),
                    failure: Some(failure),
                })
            }
        }
    }
}

struct Outcome {
    destination: String,
    log: String,
    failure: Option<UploadFailure>,
}

/// Uploads the objects a backup leaves in S3; the first failure ends the upload.
async fn upload(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    dir_key: &str,
    endpoint: &str,
) -> Option<UploadFailure> {
    for (file, body) in [
        (
            "xtrabackup_checkpoints",
            "backup_type = full-backuped\nfrom_lsn = 0\n",
        ),
        ("xtrabackup_info", "tool_name = xtrabackup\n"),
    ] {
        let result = client
            .put_object()
            .bucket(bucket)
            .key(format!("{dir_key}/{file}"))
            .body(aws_sdk_s3::primitives::ByteStream::from_static(
                body.as_bytes(),
            ))
            .send()
            .await;
        if let Err(e) = result {
            return Some(UploadFailure::from_sdk(&e, endpoint));
        }
    }
    None
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
    if schedule.delete_from_storage() {
        backup.metadata.finalizers = Some(vec![pxc::DELETE_BACKUP_FINALIZER.to_owned()]);
    }
    backup
}

fn job_and_pod(ns: &str, cluster: &str, backup: &str, job_name: &str) -> (Job, Pod) {
    let job_labels = json!({
        labels::BACKUP_TYPE: "xtrabackup",
        labels::CLUSTER: cluster,
        labels::BACKUP_NAME: backup,
        labels::BACKUP_JOB_NAME: job_name,
        "app.kubernetes.io/instance": cluster,
        "app.kubernetes.io/managed-by": "percona-xtradb-cluster-operator",
    });
    let container = json!([{"name": "xtrabackup", "image": "percona/percona-xtradb-cluster-operator:1.20.0-pxc8.4-backup",
        "command": ["bash", "/usr/bin/backup.sh"]}]);
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": job_name, "namespace": ns, "labels": job_labels},
        "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": job_labels},
            "spec": {"restartPolicy": "Never", "containers": container}}},
    }))
    .unwrap_or_default();
    let suffix: String = uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .chars()
        .take(5)
        .collect();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": format!("{job_name}-{suffix}"), "namespace": ns,
            "labels": {labels::JOB_NAME: job_name, "job-name": job_name, labels::BACKUP_NAME: backup, labels::CLUSTER: cluster}},
        "spec": {"restartPolicy": "Never", "containers": container},
    }))
    .unwrap_or_default();
    (job, pod)
}

async fn create_ignoring_conflict<K>(api: &Api<K>, object: &K) -> Result<(), OperatorError>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn patch_status(
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
