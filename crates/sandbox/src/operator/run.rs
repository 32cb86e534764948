//! Running one backup through the operator's states, `""` → `Starting` → `Running` →
//! `Succeeded` | `Failed`, across steps: the lock and the deadlines ([`super::lifecycle`]),
//! the Job and its Pod, and the upload, which runs in a task of its own so that an upload to a
//! store that never answers hangs as xbcloud's would, until a deadline fails it or the backup
//! is deleted.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::kube::api::POD_LOG_ANNOTATION;
use backstop::pxc::{
    self, BackupStatus, PerconaXtraDBCluster, PerconaXtraDBClusterBackup, Storage, state,
};
use backstop::s3::client::{self as s3client, Endpoint};

use super::lifecycle::{self, Limits, Phase, RELEASE_LOCK_FINALIZER};
use super::workload::{job_of, pod_of};
use super::xbcloud::{self, UploadFailure};
use super::{OperatorError, SimOperator, StepReport, create_ignoring_conflict, patch_status};

/// An upload under way.
pub(super) struct InFlight {
    task: tokio::task::JoinHandle<Outcome>,
    /// When the Job's current attempt started (operator clock).
    started: Timestamp,
    /// Attempts so far (the first is 1).
    attempts: i64,
    pod: String,
    storage_name: String,
    storage: Storage,
}

/// What an upload left: where, the Job's log, and the failure if any.
pub(super) struct Outcome {
    destination: String,
    log: String,
    failure: Option<UploadFailure>,
}

impl SimOperator {
    /// Moves one backup on as far as it can go in this step.
    pub(super) async fn advance(
        &self,
        backup: &PerconaXtraDBClusterBackup,
        cluster: Option<&PerconaXtraDBCluster>,
        report: &mut StepReport,
    ) -> Result<(), OperatorError> {
        let limits = Limits::of(cluster, backup);
        match lifecycle::state_of(backup) {
            "" => self.start(backup, cluster, &limits, report).await,
            state::STARTING | state::RUNNING => self.progress(backup, &limits, report).await,
            _ => Ok(()),
        }
    }

    /// A new backup: the finalizer, the starting deadline, the lock, then the Job.
    async fn start(
        &self,
        backup: &PerconaXtraDBClusterBackup,
        cluster: Option<&PerconaXtraDBCluster>,
        limits: &Limits,
        report: &mut StepReport,
    ) -> Result<(), OperatorError> {
        let ns = backup.namespace().unwrap_or_default();
        let name = backup.name_any();
        let backups: Api<PerconaXtraDBClusterBackup> = Api::namespaced(self.client.clone(), &ns);
        let now = self.clock.now();
        if !lifecycle::has_finalizer(backup, RELEASE_LOCK_FINALIZER) {
            let mut finalizers = backup.finalizers().to_vec();
            finalizers.push(RELEASE_LOCK_FINALIZER.to_owned());
            lifecycle::set_finalizers(&self.client, backup, finalizers).await?;
        }
        let since = self.first_seen(backup, now);
        if let Some(error) = lifecycle::deadline_passed(Phase::New { since }, limits, now) {
            return self.fail_early(backup, error, report).await;
        }
        if !limits.allow_parallel && !lifecycle::acquire(&self.client, backup, now).await? {
            report.waiting.push(name);
            return Ok(());
        }
        let storage_name = backup.spec.storage_name.clone().unwrap_or_default();
        let storage = cluster
            .and_then(|c| c.spec.backup.clone())
            .and_then(|b| b.storages)
            .and_then(|mut s| s.remove(&storage_name));
        let Some(storage) = storage else {
            let error = format!(
                "storage {storage_name:?} of cluster {:?} not found",
                backup.spec.pxc_cluster
            );
            return self.fail_early(backup, error, report).await;
        };
        let job_name = pxc::backup_job_name(&name);
        let job = job_of(&ns, &backup.spec.pxc_cluster, &name, &job_name, limits);
        create_ignoring_conflict(&Api::<Job>::namespaced(self.client.clone(), &ns), &job).await?;
        let starting = BackupStatus {
            state: Some(state::STARTING.into()),
            storage_name: Some(storage_name.clone()),
            storage_type: storage.kind.clone(),
            ..BackupStatus::default()
        };
        patch_status(&backups, &name, &starting).await?;
        // The simulated Pod starts at once, so `Starting` lasts until the next write.
        self.launch(backup, storage_name, storage, 1).await?;
        self.settle(backup, limits, report, self.options.upload_wait)
            .await
    }

    /// A backup past its start: respawns an upload this operator lost (a restart), then
    /// settles it.
    async fn progress(
        &self,
        backup: &PerconaXtraDBClusterBackup,
        limits: &Limits,
        report: &mut StepReport,
    ) -> Result<(), OperatorError> {
        let key = key_of(backup);
        let known = self.in_flight().contains_key(&key);
        if !known {
            let storage_name = backup.spec.storage_name.clone().unwrap_or_default();
            let storage = self.storage_of(backup, &storage_name).await?;
            let Some(storage) = storage else {
                let error = format!("storage {storage_name:?} not found");
                return self.fail_early(backup, error, report).await;
            };
            self.launch(backup, storage_name, storage, 1).await?;
        }
        self.settle(backup, limits, report, Duration::ZERO).await
    }

    /// Starts an attempt: a Pod, `Running`, and the upload's task.
    async fn launch(
        &self,
        backup: &PerconaXtraDBClusterBackup,
        storage_name: String,
        storage: Storage,
        attempts: i64,
    ) -> Result<(), OperatorError> {
        let ns = backup.namespace().unwrap_or_default();
        let name = backup.name_any();
        let now = self.clock.now();
        let job_name = pxc::backup_job_name(&name);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let pod = pods
            .create(
                &PostParams::default(),
                &pod_of(&ns, &backup.spec.pxc_cluster, &name, &job_name),
            )
            .await?;
        let running = BackupStatus {
            state: Some(state::RUNNING.into()),
            storage_name: Some(storage_name.clone()),
            storage_type: storage.kind.clone(),
            ..BackupStatus::default()
        };
        let backups: Api<PerconaXtraDBClusterBackup> = Api::namespaced(self.client.clone(), &ns);
        patch_status(&backups, &name, &running).await?;
        let task = self
            .spawn_upload(&ns, &name, &storage, &backup.spec.pxc_cluster, now)
            .await?;
        self.in_flight().insert(
            key_of(backup),
            InFlight {
                task,
                started: now,
                attempts,
                pod: pod.name_any(),
                storage_name,
                storage,
            },
        );
        Ok(())
    }

    /// Waits up to `wait` for the upload, then finishes the backup, retries it within the
    /// Job's `backoffLimit`, fails it at the Job's deadline, or leaves it running.
    async fn settle(
        &self,
        backup: &PerconaXtraDBClusterBackup,
        limits: &Limits,
        report: &mut StepReport,
        wait: Duration,
    ) -> Result<(), OperatorError> {
        let key = key_of(backup);
        let Some(mut flight) = self.in_flight().remove(&key) else {
            return Ok(());
        };
        let mut joined = None;
        if !wait.is_zero() {
            // Waited for here, or not at all: a JoinHandle yields its output once.
            joined = tokio::time::timeout(wait, &mut flight.task).await.ok();
        } else if flight.task.is_finished() {
            joined = Some((&mut flight.task).await);
        }
        let Some(joined) = joined else {
            let now = self.clock.now();
            let phase = Phase::Running {
                since: flight.started,
            };
            if let Some(error) = lifecycle::deadline_passed(phase, limits, now) {
                flight.task.abort();
                let outcome = Outcome {
                    destination: String::new(),
                    log: format!("{error}\n"),
                    failure: Some(UploadFailure::Other(error)),
                };
                return self.finish(backup, &flight, outcome, report).await;
            }
            report.running.push(backup.name_any());
            self.in_flight().insert(key, flight);
            return Ok(());
        };
        let outcome = match joined {
            Ok(outcome) => outcome,
            Err(e) => Outcome {
                destination: String::new(),
                log: format!("upload task failed: {e}\n"),
                failure: Some(UploadFailure::Other(e.to_string())),
            },
        };
        if outcome.failure.is_some() && flight.attempts <= limits.backoff.unwrap_or(0) {
            self.end_pod(backup, &flight.pod, &outcome.log, false)
                .await?;
            let attempts = flight.attempts + 1;
            self.launch(backup, flight.storage_name, flight.storage, attempts)
                .await?;
            report.running.push(backup.name_any());
            return Ok(());
        }
        self.finish(backup, &flight, outcome, report).await
    }

    /// Writes the end of a backup in the order the operator observes it (Pod, Job, backup),
    /// then frees the lock.
    async fn finish(
        &self,
        backup: &PerconaXtraDBClusterBackup,
        flight: &InFlight,
        outcome: Outcome,
        report: &mut StepReport,
    ) -> Result<(), OperatorError> {
        let ns = backup.namespace().unwrap_or_default();
        let name = backup.name_any();
        let now = self.clock.now();
        let succeeded = outcome.failure.is_none();
        self.end_pod(backup, &flight.pod, &outcome.log, succeeded)
            .await?;
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &ns);
        let condition = if succeeded { "Complete" } else { "Failed" };
        let mut job_status = json!({"conditions": [{"type": condition, "status": "True",
            "lastTransitionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()}]});
        job_status[if succeeded { "succeeded" } else { "failed" }] = json!(flight.attempts);
        jobs.patch_status(
            &pxc::backup_job_name(&name),
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
            destination: Some(outcome.destination).filter(|d| !d.is_empty()),
            storage_name: Some(flight.storage_name.clone()),
            storage_type: flight.storage.kind.clone(),
            s3: flight.storage.s3.clone(),
            error: outcome.failure.as_ref().map(UploadFailure::status_error),
            ..BackupStatus::default()
        };
        let backups: Api<PerconaXtraDBClusterBackup> = Api::namespaced(self.client.clone(), &ns);
        patch_status(&backups, &name, &status).await?;
        lifecycle::release(&self.client, backup).await?;
        if succeeded {
            report.succeeded.push(name);
        } else {
            report.failed.push(name);
        }
        Ok(())
    }

    /// Fails a backup that never got a Job (a deadline, a missing storage), freeing the lock
    /// if it held it.
    async fn fail_early(
        &self,
        backup: &PerconaXtraDBClusterBackup,
        error: String,
        report: &mut StepReport,
    ) -> Result<(), OperatorError> {
        let ns = backup.namespace().unwrap_or_default();
        let name = backup.name_any();
        let backups: Api<PerconaXtraDBClusterBackup> = Api::namespaced(self.client.clone(), &ns);
        let status = BackupStatus {
            state: Some(state::FAILED.into()),
            error: Some(error),
            storage_name: backup.spec.storage_name.clone(),
            ..BackupStatus::default()
        };
        patch_status(&backups, &name, &status).await?;
        lifecycle::release(&self.client, backup).await?;
        report.failed.push(name);
        Ok(())
    }

    /// A deleted backup that still holds `release-lock`: its upload stops, its Job and Pods
    /// go (the owner reference's garbage collection, done here because a bare API server has
    /// no collector), the lock is freed, then the finalizer.
    pub(super) async fn release_deleted(
        &self,
        backup: &PerconaXtraDBClusterBackup,
        report: &mut StepReport,
    ) -> Result<(), OperatorError> {
        let ns = backup.namespace().unwrap_or_default();
        let name = backup.name_any();
        if let Some(flight) = self.in_flight().remove(&key_of(backup)) {
            flight.task.abort();
        }
        let job_name = pxc::backup_job_name(&name);
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &ns);
        match jobs.delete(&job_name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let selector = format!("{}={job_name}", pxc::labels::JOB_NAME);
        for pod in pods
            .list(&kube::api::ListParams::default().labels(&selector))
            .await?
            .items
        {
            match pods.delete(&pod.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        lifecycle::release(&self.client, backup).await?;
        let remaining: Vec<String> = backup
            .finalizers()
            .iter()
            .filter(|f| *f != RELEASE_LOCK_FINALIZER)
            .cloned()
            .collect();
        lifecycle::set_finalizers(&self.client, backup, remaining).await?;
        report.released.push(name);
        Ok(())
    }

    /// The Pod of an attempt ends: its log, then its phase.
    async fn end_pod(
        &self,
        backup: &PerconaXtraDBClusterBackup,
        pod: &str,
        log: &str,
        succeeded: bool,
    ) -> Result<(), OperatorError> {
        let ns = backup.namespace().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        pods.patch(
            pod,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {POD_LOG_ANNOTATION: log}}})),
        )
        .await?;
        let phase = if succeeded { "Succeeded" } else { "Failed" };
        pods.patch_status(
            pod,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": phase}})),
        )
        .await?;
        Ok(())
    }

    async fn storage_of(
        &self,
        backup: &PerconaXtraDBClusterBackup,
        storage_name: &str,
    ) -> Result<Option<Storage>, OperatorError> {
        let ns = backup.namespace().unwrap_or_default();
        let clusters: Api<PerconaXtraDBCluster> = Api::namespaced(self.client.clone(), &ns);
        Ok(clusters
            .get_opt(&backup.spec.pxc_cluster)
            .await?
            .and_then(|c| c.spec.backup)
            .and_then(|b| b.storages)
            .and_then(|mut s| s.remove(storage_name)))
    }

    /// Prepares the upload (credentials, PVC) and spawns it. The operator names the
    /// destination after the backup's start on its clock (the API server's creationTimestamp
    /// follows the wall clock, not an accelerated one).
    async fn spawn_upload(
        &self,
        ns: &str,
        backup: &str,
        storage: &Storage,
        cluster: &str,
        at: Timestamp,
    ) -> Result<tokio::task::JoinHandle<Outcome>, OperatorError> {
        let dir = pxc::backup_dir_name(cluster, at);
        let stamp = at.strftime("%y%m%d %H:%M:%S").to_string();
        let ready = |outcome: Outcome| tokio::spawn(async move { outcome });
        match (storage.kind.as_deref(), &storage.s3) {
            (Some(pxc::STORAGE_S3), Some(s3)) => {
                let endpoint = Endpoint::of_storage(s3);
                let endpoint_text = s3
                    .endpoint_url
                    .clone()
                    .unwrap_or_else(|| format!("s3.{}.amazonaws.com", endpoint.region));
                let destination = pxc::s3_destination(&s3.bucket, cluster, at);
                let bucket = s3.bucket_name().to_owned();
                let key = format!("{}{dir}", s3.prefix());
                let region = endpoint.region.clone();
                let Some(credentials) = self.credentials(ns, s3).await? else {
                    let failure = UploadFailure::Service {
                        code: "InvalidAccessKeyId".into(),
                        message: "credentials secret missing or incomplete".into(),
                    };
                    let log = xbcloud::job_log(
                        &stamp,
                        &bucket,
                        &region,
                        &endpoint_text,
                        &dir,
                        Some(&failure),
                    );
                    return Ok(ready(Outcome {
                        destination,
                        log,
                        failure: Some(failure),
                    }));
                };
                let client = s3client::client(&endpoint, &credentials, self.options.s3_timeouts);
                Ok(tokio::spawn(async move {
                    let failure = upload(&client, &bucket, &key, &endpoint_text).await;
                    let log = xbcloud::job_log(
                        &stamp,
                        &bucket,
                        &region,
                        &endpoint_text,
                        &dir,
                        failure.as_ref(),
                    );
                    Outcome {
                        destination,
                        log,
                        failure,
                    }
                }))
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
                Ok(ready(Outcome {
                    destination: format!("pvc/{pvc_name}"),
                    log: format!(
                        "{stamp} [INFO] Backup to pvc/{pvc_name} started\n{stamp} completed OK!\n"
                    ),
                    failure: None,
                }))
            }
            (kind, _) => {
                let failure =
                    UploadFailure::Other(format!("storage type {kind:?} is not simulated"));
                Ok(ready(Outcome {
                    destination: String::new(),
                    log: format!("{stamp} [ERROR] {}\n", failure.status_error()),
                    failure: Some(failure),
                }))
            }
        }
    }
}

/// The in-flight map's key: namespace, name and uid, so a backup deleted and recreated under
/// the same name is a new one.
fn key_of(backup: &PerconaXtraDBClusterBackup) -> String {
    format!(
        "{}/{}/{}",
        backup.namespace().unwrap_or_default(),
        backup.name_any(),
        backup.metadata.uid.as_deref().unwrap_or_default()
    )
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
