//! Completions counted exactly once, across watch resyncs, restarts and replicas.
//!
//! A finished backup is *claimed* by writing the annotation [`OBSERVED_ANNOTATION`] on its CR
//! with a resourceVersion precondition: exactly one writer wins. The winner counts the
//! completion, observes its duration, and for a failure reads the Job pod's last 100 log lines,
//! classifies the cause, emits a Warning Event on the backup and logs it. The annotation lives
//! as long as the backup CR, so:
//! - a resync or a restart sees the annotation and does not count again;
//! - a backup that finished while no Backstop ran has no annotation yet and is counted after
//!   the restart (never skipped, unless retention deleted it first);
//! - with several replicas each completion is counted by exactly one of them, so
//!   `sum without (instance, pod)` of the counters is exact.
//!
//! The annotation is bookkeeping, not a change to the cluster; it is written in dry-run mode
//! too. It needs `patch` on perconaxtradbclusterbackups.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt as _;
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde_json::json;

use crate::k8s::events::{EventSpec, EventType};
use crate::pxc::{PerconaXtraDBClusterBackup, labels, state};
use crate::watch::cause::{self, FailureCause};

/// The annotation that marks a finished backup as counted; its value is the result.
pub const OBSERVED_ANNOTATION: &str = "backstop.percona.com/observed";

/// Log lines read from a failed backup's pod (the runbook's `kubectl logs --tail=100`).
const LOG_TAIL_LINES: i64 = 100;

/// Log lines quoted in the Event.
const EVENT_TAIL_LINES: usize = 5;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    namespace: String,
    cluster: String,
    storage: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    namespace: String,
    cluster: String,
    storage: String,
    cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StorageLabels {
    namespace: String,
    cluster: String,
    storage: String,
}

/// The completion counters and the duration histogram.
#[derive(Clone)]
pub struct CompletionMetrics {
    completions: Family<ResultLabels, Counter>,
    failures: Family<CauseLabels, Counter>,
    duration: Family<StorageLabels, Histogram>,
}

impl CompletionMetrics {
    /// Registers the families.
    pub fn register(registry: &mut Registry) -> Self {
        let completions = Family::<ResultLabels, Counter>::default();
        registry.register(
            "backstop_backup_completions",
            "Backups that finished, by result; each counted by exactly one Backstop replica, once",
            completions.clone(),
        );
        let failures = Family::<CauseLabels, Counter>::default();
        registry.register(
            "backstop_backup_failures",
            "Failed backups by cause, classified from the backup pod's log and status.error",
            failures.clone(),
        );
        let duration = Family::<StorageLabels, Histogram>::new_with_constructor(|| {
            // 30 s to about 17 h: backups of small to very large databases.
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                30.0, 2.0, 12,
            ))
        });
        registry.register(
            "backstop_backup_duration_seconds",
            "Backup duration from the CR's creation to its completion",
            duration.clone(),
        );
        Self {
            completions,
            failures,
            duration,
        }
    }
}

/// Claims and records finished backups.
pub struct CompletionRecorder {
    client: kube::Client,
    metrics: CompletionMetrics,
    in_flight: Mutex<HashSet<String>>,
}

impl CompletionRecorder {
    /// A recorder writing through `client`.
    pub fn new(client: kube::Client, metrics: CompletionMetrics) -> Arc<Self> {
        Arc::new(Self {
            client,
            metrics,
            in_flight: Mutex::new(HashSet::new()),
        })
    }

    /// Looks at a backup as a watch delivered it; a finished, unclaimed one is claimed and
    /// recorded in the background.
    pub fn offer(self: &Arc<Self>, backup: &PerconaXtraDBClusterBackup) {
        let result = match backup.status.as_ref().and_then(|s| s.state.as_deref()) {
            Some(state::SUCCEEDED) => "succeeded",
            Some(state::FAILED) => "failed",
            _ => return,
        };
        if backup.annotations().contains_key(OBSERVED_ANNOTATION)
            || backup.metadata.deletion_timestamp.is_some()
        {
            return;
        }
        let Some(uid) = backup.uid() else {
            return;
        };
        if !self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(uid.clone())
        {
            return;
        }
        let this = self.clone();
        let backup = backup.clone();
        tokio::spawn(async move {
            match this.claim(&backup, result).await {
                Ok(true) => this.record(&backup, result).await,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(backup = %backup.name_any(), error = %e, "could not claim a finished backup; a later event retries")
                }
            }
            this.in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&uid);
        });
    }

    /// Writes the annotation on the version we saw; `false` when someone else changed the
    /// backup first (another replica claimed it, or the operator wrote: a later watch event
    /// brings the new version back to `offer`).
    async fn claim(
        &self,
        backup: &PerconaXtraDBClusterBackup,
        result: &str,
    ) -> Result<bool, kube::Error> {
        let api: Api<PerconaXtraDBClusterBackup> =
            Api::namespaced(self.client.clone(), &backup.namespace().unwrap_or_default());
        let patch = json!({"metadata": {
            "resourceVersion": backup.resource_version(),
            "annotations": {OBSERVED_ANNOTATION: result},
        }});
        match api
            .patch(
                &backup.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn record(&self, backup: &PerconaXtraDBClusterBackup, result: &str) {
        let ns = backup.namespace().unwrap_or_default();
        let status = backup.status.clone().unwrap_or_default();
        let storage = status
            .storage_name
            .clone()
            .or_else(|| backup.spec.storage_name.clone())
            .unwrap_or_default();
        let cluster = backup.spec.pxc_cluster.clone();
        self.metrics
            .completions
            .get_or_create(&ResultLabels {
                namespace: ns.clone(),
                cluster: cluster.clone(),
                storage: storage.clone(),
                result: result.to_owned(),
            })
            .inc();
        let created = backup.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let completed = status
            .completed
            .as_deref()
            .and_then(|c| c.parse::<jiff::Timestamp>().ok());
        if let (Some(created), Some(completed)) = (created, completed) {
            let seconds = completed.duration_since(created).as_secs_f64();
            if seconds >= 0.0 {
                self.metrics
                    .duration
                    .get_or_create(&StorageLabels {
                        namespace: ns.clone(),
                        cluster: cluster.clone(),
                        storage: storage.clone(),
                    })
                    .observe(seconds);
            }
        }
        if result != "failed" {
            return;
        }
        let log = self.pod_log(&ns, &backup.name_any()).await;
        let found = cause::classify(&log, status.error.as_deref());
        self.metrics
            .failures
            .get_or_create(&CauseLabels {
                namespace: ns.clone(),
                cluster: cluster.clone(),
                storage: storage.clone(),
                cause: found.as_str().to_owned(),
            })
            .inc();
        let tail = cause::tail(&log, EVENT_TAIL_LINES);
        tracing::warn!(
            namespace = %ns,
            cluster = %cluster,
            storage = %storage,
            backup = %backup.name_any(),
            cause = found.as_str(),
            error = status.error.as_deref().unwrap_or_default(),
            log_tail = %tail,
            "backup failed"
        );
        if let Err(e) = self
            .emit_event(backup, found, status.error.as_deref(), &tail)
            .await
        {
            tracing::warn!(backup = %backup.name_any(), error = %e, "could not emit the failure Event");
        }
    }

    /// The last lines of the backup Job's pod log, or empty when there is no pod or log.
    async fn pod_log(&self, ns: &str, backup: &str) -> String {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let job = crate::pxc::backup_job_name(backup);
        let selector = format!("{}={job}", labels::JOB_NAME);
        let Ok(list) = pods.list(&ListParams::default().labels(&selector)).await else {
            return String::new();
        };
        let Some(pod) = list.items.first() else {
            return String::new();
        };
        let params = LogParams {
            tail_lines: Some(LOG_TAIL_LINES),
            ..LogParams::default()
        };
        pods.logs(&pod.name_any(), &params)
            .await
            .unwrap_or_default()
    }

    async fn emit_event(
        &self,
        backup: &PerconaXtraDBClusterBackup,
        found: FailureCause,
        error: Option<&str>,
        tail: &str,
    ) -> Result<(), kube::Error> {
        crate::k8s::events::emit(
            &self.client,
            backup,
            EventSpec {
                type_: EventType::Warning,
                reason: "BackupFailed",
                action: "ObserveBackup",
                message: format!(
                    "cause={}: {}\n{tail}",
                    found.as_str(),
                    error.unwrap_or("backup failed")
                ),
            },
        )
        .await
    }
}
