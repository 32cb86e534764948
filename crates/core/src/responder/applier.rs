//! Carries out what the playbooks plan, and is the one place that knows whether this is a
//! dry run.
//!
//! Live, a [`Plan`]'s effects become requests: the cluster is replaced under the
//! resourceVersion it was read at (a 409 stops the plan, and the engine re-reads and plans
//! again), backups are created under names derived from the run, Events are emitted. In a
//! dry run the same effects are recorded in memory instead, and every read of a cluster sees
//! them laid over what the server holds, so the next step plans from the state the dry run
//! would have written, exactly as it would live. Intents, written by the webhook and the CLI,
//! go through here too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kube::ResourceExt as _;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::clock::Clock;
use crate::k8s::events::{EventSpec, EventType};
use crate::pxc::{PerconaXtraDBClusterBackup, state};

use super::cluster::{
    self, ClusterKey, backup_spec, cluster_api, is_paused, read_intent, set_backup_spec,
    set_intent, set_journal,
};
use super::effect::{
    CancelResult, Effect, Note, Outcome, Plan, RUN_LABEL, RunBackup, RunResult,
    STARTED_AT_ANNOTATION, Stage,
};
use super::intent::{INTENT_ANNOTATION, Intent};
use super::journal::{Journal, Phase};
use super::memory::Memory;
use super::metrics::ResponderMetrics;

/// Conflicts retried while recording one cluster's intent.
const MAX_INTENT_CONFLICTS: usize = 8;

/// Why a request the applier made failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A Kubernetes request failed; the step is retried.
    #[error("Kubernetes request failed: {0}")]
    Kube(#[from] kube::Error),
    /// A backup could not be built from the plan (a bug, not an input problem).
    #[error("cannot build backup {name}: {source}")]
    Backup {
        /// The backup's name.
        name: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// Why an intent could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Reading or writing the cluster failed.
    #[error("Kubernetes request failed: {0}")]
    Kube(#[from] kube::Error),
    /// The cluster kept changing between our read and our write.
    #[error("cluster {0} kept changing while its intent was recorded")]
    Conflicts(ClusterKey),
}

/// What [`Applier::record_intent`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The intent changed and was written (or, in a dry run, kept).
    Changed,
    /// The merge changed nothing; nothing was written.
    Unchanged,
    /// The cluster does not exist.
    Missing,
    /// The cluster carries the kill switch; nothing was written.
    Paused,
}

/// How a plan ended.
#[derive(Debug)]
pub enum Applied {
    /// Every effect was carried out.
    Done(Outcome),
    /// Someone wrote the cluster in between; nothing after the write happened.
    Conflict,
}

/// What a dry run would have written, per cluster.
#[derive(Debug, Default)]
struct DryRunState {
    intents: HashMap<ClusterKey, Intent>,
    clusters: HashMap<ClusterKey, (Value, Journal)>,
}

/// Live, or a dry run with what it recorded.
#[derive(Debug)]
enum Mode {
    Live,
    DryRun(Mutex<DryRunState>),
}

/// Carries out plans (see the module doc).
pub struct Applier {
    client: kube::Client,
    metrics: ResponderMetrics,
    clock: Arc<dyn Clock>,
    memory: Memory,
    mode: Mode,
}

impl std::fmt::Debug for Applier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applier")
            .field("dry_run", &self.dry_run())
            .finish_non_exhaustive()
    }
}

impl Applier {
    /// An applier that writes (`dry_run` false) or records.
    pub fn new(
        client: kube::Client,
        metrics: ResponderMetrics,
        clock: Arc<dyn Clock>,
        dry_run: bool,
    ) -> Self {
        Self {
            client,
            metrics,
            clock,
            memory: Memory::default(),
            mode: if dry_run {
                Mode::DryRun(Mutex::default())
            } else {
                Mode::Live
            },
        }
    }

    /// Whether effects are recorded rather than carried out.
    pub fn dry_run(&self) -> bool {
        matches!(self.mode, Mode::DryRun(_))
    }

    /// The replica's memory.
    pub fn memory(&self) -> &Memory {
        &self.memory
    }

    /// The cluster `key` as the playbooks should see it: as the server holds it, with what a
    /// dry run recorded laid over it (its intent, its `spec.backup` and journal).
    ///
    /// # Errors
    ///
    /// The failed request.
    pub async fn read(&self, key: &ClusterKey) -> Result<Option<DynamicObject>, kube::Error> {
        let Some(mut object) = cluster_api(&self.client, &key.namespace)
            .get_opt(&key.name)
            .await?
        else {
            return Ok(None);
        };
        if let Mode::DryRun(recorded) = &self.mode {
            let recorded = recorded.lock().unwrap_or_else(PoisonError::into_inner);
            // A dry run plans only from what it recorded: the server's intent and journal
            // are the live replicas' business.
            set_intent(&mut object, recorded.intents.get(key));
            let written = recorded.clusters.get(key);
            set_journal(&mut object, written.map(|(_, journal)| journal));
            if let Some((backup, _)) = written {
                set_backup_spec(&mut object, backup.clone());
            }
        }
        Ok(Some(object))
    }

    /// A backup a run created. A dry run starts none and assumes those it would have
    /// started succeed.
    ///
    /// # Errors
    ///
    /// The failed request.
    pub async fn read_run_backup(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PerconaXtraDBClusterBackup>, kube::Error> {
        if self.dry_run() {
            let assumed = serde_json::from_value(json!({
                "apiVersion": "pxc.percona.com/v1",
                "kind": "PerconaXtraDBClusterBackup",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {},
                "status": {"state": state::SUCCEEDED},
            }))
            .map_err(kube::Error::SerdeError)?;
            return Ok(Some(assumed));
        }
        Api::<PerconaXtraDBClusterBackup>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
    }

    /// Merges into the intent recorded on cluster `key`: live, with a merge patch under the
    /// resourceVersion it read, re-reading on 409 (the one way intents are written, by the
    /// webhook and by `backstop failover|revert`); in a dry run, in memory.
    ///
    /// # Errors
    ///
    /// [`RecordError`] when a request fails or the cluster keeps changing.
    pub async fn record_intent(
        &self,
        key: &ClusterKey,
        merge: impl Fn(&mut Intent) -> bool,
    ) -> Result<Recorded, RecordError> {
        if let Mode::DryRun(recorded) = &self.mode {
            let mut recorded = recorded.lock().unwrap_or_else(PoisonError::into_inner);
            let changed = merge(recorded.intents.entry(key.clone()).or_default());
            return Ok(if changed {
                Recorded::Changed
            } else {
                Recorded::Unchanged
            });
        }
        let api = cluster_api(&self.client, &key.namespace);
        for _ in 0..MAX_INTENT_CONFLICTS {
            let Some(object) = api.get_opt(&key.name).await? else {
                return Ok(Recorded::Missing);
            };
            if is_paused(&object) {
                return Ok(Recorded::Paused);
            }
            let mut intent = read_intent(&object);
            if !merge(&mut intent) {
                return Ok(Recorded::Unchanged);
            }
            let patch = json!({"metadata": {
                "resourceVersion": object.resource_version(),
                "annotations": {INTENT_ANNOTATION: intent.render()},
            }});
            match api
                .patch(&key.name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => {
                    tracing::info!(cluster = %key, wants_failover = intent.wants_failover(), "intent recorded");
                    return Ok(Recorded::Changed);
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(RecordError::Conflicts(key.clone()))
    }

    /// Carries out `plan` on the cluster `object` (as [`Applier::read`] returned it).
    ///
    /// # Errors
    ///
    /// [`ApplyError`] when a request fails; effects before it happened, the rest did not.
    pub async fn apply(
        &self,
        mut object: DynamicObject,
        plan: Plan,
    ) -> Result<Applied, ApplyError> {
        let key = ClusterKey::of(&object);
        let writes = plan.writes();
        for effect in plan.effects {
            match effect {
                Effect::WriteCluster {
                    playbook,
                    backup,
                    journal,
                } => {
                    if let Some(backup) = backup {
                        set_backup_spec(&mut object, backup);
                    }
                    set_journal(&mut object, Some(&journal));
                    match &self.mode {
                        Mode::Live => {
                            let started = Instant::now();
                            let written = self.replace(&object).await;
                            self.metrics.step(
                                playbook.as_str(),
                                Stage::Write.as_str(),
                                started.elapsed().as_secs_f64(),
                            );
                            match written? {
                                Some(written) => object = written,
                                None => return Ok(Applied::Conflict),
                            }
                        }
                        Mode::DryRun(recorded) => {
                            recorded
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .clusters
                                .insert(key.clone(), (backup_spec(&object), journal.clone()));
                        }
                    }
                    self.written(&key, &journal);
                }
                Effect::CreateBackup {
                    playbook,
                    stage,
                    backup,
                } => {
                    if self.dry_run() {
                        tracing::info!(cluster = %key, backup = %backup.name, "dry run: backup not created");
                        continue;
                    }
                    let started = Instant::now();
                    let created = self.create_backup(&key, &backup).await;
                    self.metrics.step(
                        playbook.as_str(),
                        stage.as_str(),
                        started.elapsed().as_secs_f64(),
                    );
                    created?;
                }
                Effect::Event(note) => self.event(&object, note).await,
                Effect::Notice(note) => {
                    let fingerprint = format!("{}:{}", note.reason, note.message);
                    if self.memory.is_new_notice(&key, fingerprint) {
                        self.event(&object, note).await;
                    }
                }
                Effect::DeleteBackup { name } => {
                    if self.dry_run() {
                        // Debug: a recorded cancellation is redone (recorded again) every step.
                        tracing::debug!(cluster = %key, backup = %name, "dry run: backup not deleted");
                        continue;
                    }
                    self.delete_backup(&key, &name).await?;
                }
                Effect::CountCancel(result) => {
                    let result = match result {
                        CancelResult::Cancelled if self.dry_run() => CancelResult::DryRun,
                        other => other,
                    };
                    self.metrics
                        .cancelled(&key.namespace, &key.name, result.as_str());
                }
                Effect::CountRun(playbook, result) => {
                    let result = match result {
                        RunResult::Succeeded if self.dry_run() => RunResult::DryRun,
                        other => other,
                    };
                    self.metrics.run(playbook.as_str(), result.as_str());
                }
            }
        }
        let mut outcome = plan.outcome;
        if self.dry_run() {
            if let Some(note) = plan.recorded_note {
                outcome.note = format!("dry run: {note}");
            }
            // A recorded write wakes no watch, so the step that would follow it is asked for.
            if writes && outcome.requeue.is_none() {
                outcome.requeue = Some(Duration::ZERO);
            }
        }
        Ok(Applied::Done(outcome))
    }

    /// After the cluster was written (or a dry run recorded it): the gauges follow the
    /// journal, and the hold-down and notices start over.
    fn written(&self, key: &ClusterKey, journal: &Journal) {
        self.metrics.set_active(
            &key.namespace,
            &key.name,
            journal
                .phase
                .is_failed_over()
                .then_some(journal.target_kind),
        );
        self.metrics.set_verification_failed(
            &key.namespace,
            &key.name,
            journal.phase == Phase::VerificationFailed,
        );
        self.memory.forget_notice(key);
        self.memory.forget_hold_down(key);
    }

    /// Replaces the cluster under its resourceVersion; `None` on a conflict.
    async fn replace(&self, object: &DynamicObject) -> Result<Option<DynamicObject>, kube::Error> {
        let api = cluster_api(&self.client, &object.namespace().unwrap_or_default());
        match api
            .replace(&object.name_any(), &PostParams::default(), object)
            .await
        {
            Ok(written) => Ok(Some(written)),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a backup a run owns, unless it exists.
    /// Deletes a backup; one already gone (or going) is fine.
    async fn delete_backup(&self, key: &ClusterKey, name: &str) -> Result<(), ApplyError> {
        let api: Api<PerconaXtraDBClusterBackup> =
            Api::namespaced(self.client.clone(), &key.namespace);
        match api.delete(name, &kube::api::DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn create_backup(&self, key: &ClusterKey, backup: &RunBackup) -> Result<(), ApplyError> {
        let api: Api<PerconaXtraDBClusterBackup> =
            Api::namespaced(self.client.clone(), &key.namespace);
        let object: PerconaXtraDBClusterBackup = serde_json::from_value(json!({
            "apiVersion": "pxc.percona.com/v1",
            "kind": "PerconaXtraDBClusterBackup",
            "metadata": {
                "name": backup.name,
                "namespace": key.namespace,
                "labels": {
                    RUN_LABEL: backup.run_id,
                    "backstop.percona.com/purpose": backup.purpose,
                    "app.kubernetes.io/managed-by": "backstop",
                },
                "annotations": {STARTED_AT_ANNOTATION: self.clock.now().to_string()},
            },
            "spec": {"pxcCluster": key.name, "storageName": backup.storage},
        }))
        .map_err(|source| ApplyError::Backup {
            name: backup.name.clone(),
            source,
        })?;
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Emits an Event about the cluster (and logs it); a failure to emit is logged, never
    /// fatal.
    async fn event(&self, object: &DynamicObject, note: Note) {
        let message = match (&self.mode, note.recorded_message) {
            (Mode::Live, _) => note.message,
            (Mode::DryRun(_), Some(dry)) => format!("[dry-run] {dry}"),
            (Mode::DryRun(_), None) => format!("[dry-run] {}", note.message),
        };
        let reason = note.reason;
        match note.type_ {
            EventType::Normal => tracing::info!(cluster = %object.name_any(), reason, "{message}"),
            EventType::Warning => tracing::warn!(cluster = %object.name_any(), reason, "{message}"),
        }
        let spec = EventSpec {
            type_: note.type_,
            reason,
            action: note.action,
            message,
        };
        if let Err(e) =
            crate::k8s::events::emit_about(&self.client, cluster::reference(object), spec).await
        {
            tracing::warn!(cluster = %object.name_any(), error = %e, "could not emit an Event");
        }
    }
}
