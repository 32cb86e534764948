//! The playbook engine: converges one managed cluster to its recorded intent, one step per
//! call, idempotently.
//!
//! Each call re-reads the cluster, decides the single next step from the intent and the
//! journal (see [`decide`]), and runs it. Every write replaces the cluster under its
//! resourceVersion, with the journal in the same request as the spec change, so a crash
//! leaves either the old state or the new one, never half of a change. A 409 (someone wrote
//! in between, a human or another replica) re-reads and re-plans from scratch, so a
//! concurrent edit is never overwritten. Backups the playbooks create have names derived
//! from the run id, so re-creating one after a crash finds it already there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::{Resource as _, ResourceExt as _};
use serde_json::{Value, json};

use crate::clock::Clock;
use crate::config::{Config, ManagedCluster};
use crate::events::{EventSpec, EventType};
use crate::pxc::{PerconaXtraDBCluster, PerconaXtraDBClusterBackup, state};

use super::intent::{INTENT_ANNOTATION, Intent};
use super::journal::{JOURNAL_ANNOTATION, JOURNAL_VERSION, Journal, Phase, TargetKind};
use super::metrics::ResponderMetrics;
use super::plan::{self, FailoverPlan, PlanError};
use super::verify::verify_storage;

mod move_to_buffer;

/// The annotation that makes Backstop leave a cluster alone (value `"true"`).
pub const PAUSE_ANNOTATION: &str = "backstop.percona.com/paused";

/// Label on the backups the playbooks create, holding the run id.
pub const RUN_LABEL: &str = "backstop.percona.com/run";

/// Annotation on the backups Backstop creates: when it created them, by its own clock. The
/// test backup's timeout counts from here, so time Backstop spent down between the revert
/// and starting the backup is not held against the backup.
pub const STARTED_AT_ANNOTATION: &str = "backstop.percona.com/started-at";

/// How far ahead of this replica's clock a recorded time may be and still be believed (the
/// clocks of two replicas, or of Backstop and the API server, differ a little).
const CLOCK_SKEW: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);

/// When the test backup started, for its timeout: Backstop's stamp on it, else the API
/// server's creation time (a backup created by a version without the stamp), each only when
/// plausible: not before the revert and not ahead of `now` by more than [`CLOCK_SKEW`]. A
/// time that is neither (a hand edit, a far-off clock) falls back to the revert, so the
/// timeout can always run out.
fn test_backup_started(
    stamp: Option<&str>,
    created: Option<jiff::Timestamp>,
    reverted: jiff::Timestamp,
    now: jiff::Timestamp,
) -> jiff::Timestamp {
    let plausible = |t: &jiff::Timestamp| *t >= reverted && *t <= now + CLOCK_SKEW;
    stamp
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .filter(plausible)
        .or(created.filter(plausible))
        .unwrap_or(reverted)
}

/// Conflicts retried within one call before giving up until the next trigger.
const MAX_CONFLICTS: usize = 5;

/// A cluster, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl std::fmt::Display for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What the engine did, and when to look again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The cluster's phase afterwards (`None`: never failed over, or paused/unmanaged).
    pub phase: Option<Phase>,
    /// Call again after this long even without a trigger (waiting for health, a rate
    /// limit, or a test backup).
    pub requeue: Option<Duration>,
    /// A short account of the step, for logs and the CLI.
    pub note: String,
}

/// Why a step could not run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A Kubernetes request failed; the step is retried.
    #[error("Kubernetes request failed: {0}")]
    Kube(#[from] kube::Error),
    /// The cluster kept changing under us.
    #[error(
        "cluster {0} changed {MAX_CONFLICTS} times while a step was being written; retrying later"
    )]
    Conflicts(ClusterKey),
    /// The cluster is not in the configuration's `clusters`.
    #[error("cluster {0} is not managed by Backstop (not in `clusters`)")]
    Unmanaged(ClusterKey),
}

/// The next step for a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do.
    Idle,
    /// Switch backups to the secondary or the buffer.
    Failover,
    /// Start the on-demand backup that covers the backups missed before the failover.
    Cover,
    /// Restore the saved settings (after the hold-down).
    Revert,
    /// Watch the test backup on the primary.
    Verify,
    /// Check the secondary the cluster failed over to; move to the buffer when it keeps
    /// failing.
    WatchSecondary,
}

/// Decides the next step from whether the alerts want a failover and where the journal says
/// the cluster is; `watch_secondary` is whether a failing secondary moves to the buffer.
/// Pure, so every combination is tested.
pub fn decide(
    wants_failover: bool,
    journal: Option<&Journal>,
    cover_wanted: bool,
    watch_secondary: bool,
) -> Step {
    let phase = journal.map(|j| j.phase);
    match (wants_failover, phase) {
        (true, None | Some(Phase::Reverted | Phase::VerificationFailed | Phase::Verifying)) => {
            Step::Failover
        }
        (true, Some(Phase::FailedOver)) => {
            if cover_wanted && journal.is_some_and(|j| j.cover_backup.is_none()) {
                Step::Cover
            } else if watch_secondary
                && journal.is_some_and(|j| j.target_kind == TargetKind::Secondary)
            {
                Step::WatchSecondary
            } else {
                Step::Idle
            }
        }
        (false, Some(Phase::FailedOver)) => Step::Revert,
        (false, Some(Phase::Verifying)) => Step::Verify,
        (false, None | Some(Phase::Reverted | Phase::VerificationFailed)) => Step::Idle,
    }
}

/// One cluster's hold-down: the primary's consecutive passing checks, and when the last one
/// counted (a check counts only a probe interval after the previous one).
#[derive(Debug, Clone, Copy)]
struct HoldDown {
    passes: u32,
    last: jiff::Timestamp,
}

/// Dry-run bookkeeping: what would have been written, kept in memory.
#[derive(Debug, Default)]
struct DryRun {
    intents: HashMap<ClusterKey, Intent>,
    journals: HashMap<ClusterKey, Journal>,
}

/// The engine. One per process; shared by the webhook (dry-run intents), the controller and
/// the CLI.
pub struct Engine {
    client: kube::Client,
    config: Arc<Config>,
    metrics: ResponderMetrics,
    clock: Arc<dyn Clock>,
    dry: Mutex<DryRun>,
    hold_down: Mutex<HashMap<ClusterKey, HoldDown>>,
    /// Per cluster on its secondary: the watch of the secondary (see [`move_to_buffer`]).
    secondary_checks: Mutex<HashMap<ClusterKey, move_to_buffer::SecondaryWatch>>,
    notices: Mutex<HashMap<ClusterKey, String>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("dry_run", &self.config.responder.dry_run)
            .finish_non_exhaustive()
    }
}

/// The raw API of PerconaXtraDBClusters: the engine edits JSON so that fields it does not
/// know survive exactly.
pub fn cluster_api(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        namespace,
        &ApiResource::erase::<PerconaXtraDBCluster>(&()),
    )
}

/// The intent recorded on a raw cluster; an unreadable one counts as empty (and is logged),
/// because the next notification rewrites it.
pub fn read_intent(object: &DynamicObject) -> Intent {
    match object.annotations().get(INTENT_ANNOTATION) {
        None => Intent::default(),
        Some(text) => Intent::parse(text).unwrap_or_else(|e| {
            tracing::warn!(cluster = %object.name_any(), error = %e, "ignoring an unreadable intent annotation");
            Intent::default()
        }),
    }
}

/// The journal recorded on a raw cluster.
///
/// # Errors
///
/// A message when the annotation exists but cannot be read: the engine then refuses to act
/// rather than guess what to restore.
pub fn read_journal(object: &DynamicObject) -> Result<Option<Journal>, String> {
    object
        .annotations()
        .get(JOURNAL_ANNOTATION)
        .map(|text| Journal::parse(text).map_err(|e| e.to_string()))
        .transpose()
}

fn backup_spec(object: &DynamicObject) -> Value {
    object
        .data
        .get("spec")
        .and_then(|s| s.get("backup"))
        .cloned()
        .unwrap_or(Value::Null)
}

fn set_backup_spec(object: &mut DynamicObject, backup: Value) {
    if !object.data["spec"].is_object() {
        object.data["spec"] = json!({});
    }
    object.data["spec"]["backup"] = backup;
}

fn set_journal(object: &mut DynamicObject, journal: &Journal) {
    object
        .annotations_mut()
        .insert(JOURNAL_ANNOTATION.to_owned(), journal.render());
}

fn reference(object: &DynamicObject) -> ObjectReference {
    ObjectReference {
        api_version: Some(PerconaXtraDBCluster::api_version(&()).into_owned()),
        kind: Some(PerconaXtraDBCluster::kind(&()).into_owned()),
        name: Some(object.name_any()),
        namespace: object.namespace(),
        uid: object.uid(),
        resource_version: object.resource_version(),
        ..ObjectReference::default()
    }
}

/// The name of a backup a run creates: deterministic, so creating it twice is harmless.
pub fn run_backup_name(cluster: &str, purpose: &str, run_id: &str) -> String {
    let short: String = run_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    let mut name = format!("backstop-{purpose}-{cluster}-{short}");
    name.truncate(63);
    name.trim_end_matches('-').to_owned()
}

enum Written {
    Done(Outcome),
    Conflict,
}

impl Engine {
    /// Builds the engine.
    pub fn new(
        client: kube::Client,
        config: Arc<Config>,
        metrics: ResponderMetrics,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        Arc::new(Self {
            client,
            config,
            metrics,
            clock,
            dry: Mutex::new(DryRun::default()),
            hold_down: Mutex::new(HashMap::new()),
            secondary_checks: Mutex::new(HashMap::new()),
            notices: Mutex::new(HashMap::new()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The metrics.
    pub fn metrics(&self) -> &ResponderMetrics {
        &self.metrics
    }

    /// The Kubernetes client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// Whether writes are suppressed.
    pub fn dry_run(&self) -> bool {
        self.config.responder.dry_run
    }

    /// The managed cluster's policy, if it is managed.
    pub fn managed(&self, key: &ClusterKey) -> Option<&ManagedCluster> {
        self.config
            .clusters
            .iter()
            .find(|c| c.namespace == key.namespace && c.name == key.name)
    }

    /// Records the intent in memory (dry-run mode, where nothing is written to the cluster).
    pub fn dry_run_intent(
        &self,
        key: &ClusterKey,
        update: impl FnOnce(&mut Intent) -> bool,
    ) -> bool {
        let mut dry = self.dry.lock().unwrap_or_else(PoisonError::into_inner);
        update(dry.intents.entry(key.clone()).or_default())
    }

    /// The engine's clock: what every time it records (journal, intents, backups) is read
    /// from, so a test clock moves all of them together.
    pub fn now(&self) -> jiff::Timestamp {
        self.clock.now()
    }

    /// Forgets what this replica observed before it (re)gained leadership: hold-down passes
    /// and the last notice per cluster. Another replica led in between and may have seen
    /// the primary fail, so checks from an earlier term are not consecutive with the next.
    pub fn leadership_gained(&self) {
        self.hold_down
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.secondary_checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.notices
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// How long until the next hold-down check of `key` may count: checks are one probe
    /// interval apart, however often the cluster is reconciled (every notification, watch
    /// event and requeue triggers a reconcile).
    fn hold_down_wait(&self, key: &ClusterKey) -> Option<Duration> {
        let last = self
            .hold_down
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)?
            .last;
        self.next_check_in(last)
    }

    /// How long until a check one probe interval after `last` is due (`None`: now).
    fn next_check_in(&self, last: jiff::Timestamp) -> Option<Duration> {
        let since = Duration::try_from(self.now().duration_since(last)).unwrap_or(Duration::ZERO);
        self.probe_interval()
            .checked_sub(since)
            .filter(|d| !d.is_zero())
    }

    fn probe_interval(&self) -> Duration {
        self.config.probe.interval.get()
    }

    /// Runs the next step for `key`.
    ///
    /// # Errors
    ///
    /// [`EngineError`] when the cluster is not managed, a request failed, or the cluster kept
    /// changing; the caller retries.
    pub async fn reconcile(&self, key: &ClusterKey) -> Result<Outcome, EngineError> {
        let managed = self
            .managed(key)
            .cloned()
            .ok_or_else(|| EngineError::Unmanaged(key.clone()))?;
        for _ in 0..MAX_CONFLICTS {
            match self.step(key, &managed).await? {
                Written::Done(outcome) => return Ok(outcome),
                Written::Conflict => {
                    tracing::info!(cluster = %key, "cluster changed while writing; re-reading and re-planning");
                }
            }
        }
        Err(EngineError::Conflicts(key.clone()))
    }

    async fn step(
        &self,
        key: &ClusterKey,
        managed: &ManagedCluster,
    ) -> Result<Written, EngineError> {
        let api = cluster_api(&self.client, &key.namespace);
        let Some(object) = api.get_opt(&key.name).await? else {
            self.metrics.set_active(&key.namespace, &key.name, None);
            return Ok(Written::Done(Outcome {
                phase: None,
                requeue: None,
                note: "cluster not found".into(),
            }));
        };
        if object
            .annotations()
            .get(PAUSE_ANNOTATION)
            .map(String::as_str)
            == Some("true")
        {
            return Ok(Written::Done(Outcome {
                phase: None,
                requeue: None,
                note: format!("paused by the {PAUSE_ANNOTATION} annotation; left alone"),
            }));
        }
        let (intent, journal) = if self.dry_run() {
            let dry = self.dry.lock().unwrap_or_else(PoisonError::into_inner);
            (
                dry.intents.get(key).cloned().unwrap_or_default(),
                dry.journals.get(key).cloned(),
            )
        } else {
            let journal = match read_journal(&object) {
                Ok(j) => j,
                Err(problem) => {
                    let message = format!(
                        "refusing to act: {problem}; fix or remove the {JOURNAL_ANNOTATION} annotation"
                    );
                    self.notice(
                        &object,
                        EventType::Warning,
                        "JournalUnreadable",
                        "Reconcile",
                        message.clone(),
                    )
                    .await;
                    return Ok(Written::Done(Outcome {
                        phase: None,
                        requeue: None,
                        note: message,
                    }));
                }
            };
            (read_intent(&object), journal)
        };
        self.metrics.set_active(
            &key.namespace,
            &key.name,
            journal
                .as_ref()
                .filter(|j| j.phase.is_failed_over())
                .map(|j| j.target_kind),
        );
        self.metrics.set_verification_failed(
            &key.namespace,
            &key.name,
            journal
                .as_ref()
                .is_some_and(|j| j.phase == Phase::VerificationFailed),
        );
        let cover_wanted = self.config.responder.failover.on_demand_backup;
        let watch_secondary = self
            .config
            .responder
            .failover
            .buffer_after_secondary_failures
            > 0;
        let step = decide(
            intent.wants_failover(),
            journal.as_ref(),
            cover_wanted,
            watch_secondary,
        );
        if step != Step::WatchSecondary {
            // Failed checks count only while nothing else happens: a resolved alert or a new
            // failover in between starts the count over.
            self.secondary_checks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(key);
        }
        match step {
            Step::Idle => Ok(Written::Done(Outcome {
                phase: journal.as_ref().map(|j| j.phase),
                requeue: None,
                note: "nothing to do".into(),
            })),
            // Each step's future on the heap: together they would make every reconcile's
            // future as large as the largest (several S3 round trips deep), which overflows
            // a 2 MiB thread stack in debug builds when polled in place.
            Step::Failover => Box::pin(self.failover(key, managed, object, journal)).await,
            Step::Cover => Box::pin(self.cover(key, object, journal)).await,
            Step::Revert => Box::pin(self.revert(key, object, journal)).await,
            Step::Verify => Box::pin(self.verify(key, object, journal)).await,
            Step::WatchSecondary => {
                Box::pin(self.watch_secondary(key, managed, object, journal)).await
            }
        }
    }

    /// Emits an Event about a refusal or a wait only when it differs from the last one for
    /// this cluster, so a condition that lasts does not flood the namespace.
    async fn notice(
        &self,
        object: &DynamicObject,
        type_: EventType,
        reason: &str,
        action: &str,
        message: String,
    ) {
        let key = ClusterKey {
            namespace: object.namespace().unwrap_or_default(),
            name: object.name_any(),
        };
        let fingerprint = format!("{reason}:{message}");
        {
            let mut notices = self.notices.lock().unwrap_or_else(PoisonError::into_inner);
            if notices.get(&key) == Some(&fingerprint) {
                return;
            }
            notices.insert(key.clone(), fingerprint);
        }
        self.event(object, type_, reason, action, message).await;
    }

    async fn event(
        &self,
        object: &DynamicObject,
        type_: EventType,
        reason: &str,
        action: &str,
        message: String,
    ) {
        let message = if self.dry_run() {
            format!("[dry-run] {message}")
        } else {
            message
        };
        match type_ {
            EventType::Normal => tracing::info!(cluster = %object.name_any(), reason, "{message}"),
            EventType::Warning => tracing::warn!(cluster = %object.name_any(), reason, "{message}"),
        }
        let spec = EventSpec {
            type_,
            reason,
            action,
            message,
        };
        if let Err(e) = crate::events::emit_about(&self.client, reference(object), spec).await {
            tracing::warn!(cluster = %object.name_any(), error = %e, "could not emit an Event");
        }
    }

    /// Writes a failed-over cluster: `backup` as its `spec.backup` and `journal`, in one
    /// replace under the resourceVersion `object` was read at, and records the success
    /// (metrics; notices and the hold-down start over). `None` when someone wrote in between.
    async fn write_failed_over(
        &self,
        playbook: &str,
        key: &ClusterKey,
        mut object: DynamicObject,
        backup: Value,
        journal: &Journal,
    ) -> Result<Option<DynamicObject>, EngineError> {
        set_backup_spec(&mut object, backup);
        set_journal(&mut object, journal);
        let Some(written) = self.timed(playbook, "write", self.write(&object)).await? else {
            return Ok(None);
        };
        self.metrics.run(playbook, "succeeded");
        self.metrics
            .set_active(&key.namespace, &key.name, Some(journal.target_kind));
        self.metrics
            .set_verification_failed(&key.namespace, &key.name, false);
        self.forget_notice(key);
        self.forget_hold_down(key);
        Ok(Some(written))
    }

    /// Keeps what a dry run would have written as `key`'s journal.
    fn remember_dry_journal(&self, key: &ClusterKey, journal: Journal) {
        self.dry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .journals
            .insert(key.clone(), journal);
    }

    /// Forgets the hold-down of `key`: a failover or a revert starts it afresh. (The watch
    /// of the secondary needs no forgetting here: any step but the watch itself drops it.)
    fn forget_hold_down(&self, key: &ClusterKey) {
        self.hold_down
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    fn forget_notice(&self, key: &ClusterKey) {
        self.notices
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    async fn timed<T>(&self, playbook: &str, step: &str, work: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = work.await;
        self.metrics
            .step(playbook, step, started.elapsed().as_secs_f64());
        out
    }

    /// Writes `object` (already changed) under its resourceVersion.
    async fn write(&self, object: &DynamicObject) -> Result<Option<DynamicObject>, EngineError> {
        let api = cluster_api(&self.client, &object.namespace().unwrap_or_default());
        match api
            .replace(&object.name_any(), &PostParams::default(), object)
            .await
        {
            Ok(written) => Ok(Some(written)),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// How long until the per-cluster cool-down allows another playbook run.
    fn cooldown_left(&self, journal: Option<&Journal>) -> Option<Duration> {
        let journal = journal?;
        let last = journal
            .reverted_at
            .unwrap_or(journal.failed_over_at)
            .max(journal.failed_over_at);
        let cooldown = self.config.responder.rate_limits.per_cluster_cooldown.get();
        let since = self.now().duration_since(last);
        let since = Duration::try_from(since).unwrap_or(Duration::ZERO);
        cooldown.checked_sub(since).filter(|d| !d.is_zero())
    }

    /// Failovers of managed clusters within the global window, from their journals (so the
    /// limit holds across restarts and replicas).
    async fn recent_failovers(&self) -> Result<u32, EngineError> {
        let window = self.config.responder.rate_limits.global_window.get();
        let now = self.now();
        let mut count = 0;
        for managed in &self.config.clusters {
            let key = ClusterKey {
                namespace: managed.namespace.clone(),
                name: managed.name.clone(),
            };
            let journal = if self.dry_run() {
                self.dry
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .journals
                    .get(&key)
                    .cloned()
            } else {
                let api = cluster_api(&self.client, &managed.namespace);
                api.get_opt(&managed.name)
                    .await?
                    .and_then(|o| read_journal(&o).ok().flatten())
            };
            if let Some(j) = journal {
                let age = Duration::try_from(now.duration_since(j.failed_over_at))
                    .unwrap_or(Duration::ZERO);
                if age < window {
                    count += 1;
                }
            }
        }
        Ok(count)
    }

    async fn failover(
        &self,
        key: &ClusterKey,
        managed: &ManagedCluster,
        object: DynamicObject,
        previous: Option<Journal>,
    ) -> Result<Written, EngineError> {
        const PLAYBOOK: &str = "failover";
        let retry = Some(self.probe_interval());
        if let Some(left) = self.cooldown_left(previous.as_ref()) {
            self.metrics.run(PLAYBOOK, "rate_limited");
            self.notice(
                &object,
                EventType::Warning,
                "FailoverRateLimited",
                "Failover",
                format!(
                    "failover wanted but the per-cluster cool-down has {}s left",
                    left.as_secs()
                ),
            )
            .await;
            return Ok(Written::Done(Outcome {
                phase: previous.map(|j| j.phase),
                requeue: Some(left),
                note: "rate limited (per-cluster cool-down)".into(),
            }));
        }
        let limits = &self.config.responder.rate_limits;
        let recent = self.recent_failovers().await?;
        if recent >= limits.global_max_failovers {
            self.metrics.run(PLAYBOOK, "rate_limited");
            self.notice(
                &object,
                EventType::Warning,
                "FailoverRateLimited",
                "Failover",
                format!(
                    "failover wanted but {recent} clusters failed over within {}; the global limit is {}",
                    limits.global_window, limits.global_max_failovers
                ),
            )
            .await;
            return Ok(Written::Done(Outcome {
                phase: previous.map(|j| j.phase),
                requeue: retry,
                note: "rate limited (global)".into(),
            }));
        }

        let backup = backup_spec(&object);
        let mut reasons = Vec::new();
        let mut chosen: Option<FailoverPlan> = None;
        match plan::plan_failover(&backup, &managed.failover, TargetKind::Secondary) {
            Ok(plan) => {
                let storage = plan.verify.clone().unwrap_or(Value::Null);
                let verified = self
                    .timed(
                        PLAYBOOK,
                        "verify_secondary",
                        verify_storage(
                            &self.client,
                            &self.config.probe,
                            &key.namespace,
                            &key.name,
                            &plan.target_storage,
                            &storage,
                        ),
                    )
                    .await;
                match verified {
                    Ok(()) => chosen = Some(plan),
                    Err(problem) => reasons.push(format!("secondary unhealthy: {problem}")),
                }
            }
            Err(e @ PlanError::NothingProtected(_) | e @ PlanError::NoBackupSpec) => {
                self.metrics.run(PLAYBOOK, "no_viable_target");
                self.notice(
                    &object,
                    EventType::Warning,
                    "FailoverRefused",
                    "Failover",
                    format!("nothing changed: {e}"),
                )
                .await;
                return Ok(Written::Done(Outcome {
                    phase: previous.map(|j| j.phase),
                    requeue: None,
                    note: e.to_string(),
                }));
            }
            Err(e) => reasons.push(e.to_string()),
        }
        if chosen.is_none() {
            match plan::plan_failover(&backup, &managed.failover, TargetKind::Buffer) {
                Ok(plan) => chosen = Some(plan),
                Err(e) => reasons.push(e.to_string()),
            }
        }
        let Some(plan) = chosen else {
            self.metrics.run(PLAYBOOK, "no_viable_target");
            self.notice(
                &object,
                EventType::Warning,
                "FailoverRefused",
                "Failover",
                format!(
                    "no viable failover target, nothing changed: {}",
                    reasons.join("; ")
                ),
            )
            .await;
            return Ok(Written::Done(Outcome {
                phase: previous.map(|j| j.phase),
                requeue: retry,
                note: format!("no viable target: {}", reasons.join("; ")),
            }));
        };

        let now = self.now();
        let journal = Journal {
            version: JOURNAL_VERSION,
            run_id: uuid::Uuid::new_v4().to_string(),
            phase: Phase::FailedOver,
            strategy: plan.strategy.to_owned(),
            target_kind: plan.target_kind,
            target_storage: plan.target_storage.clone(),
            protected: plan.protected.clone(),
            changes: plan.changes.clone(),
            failed_over_at: now,
            cover_backup: None,
            moved_to_buffer_at: None,
            reverted_at: None,
            test_backup: None,
            finished_at: None,
            kept_edits: Vec::new(),
            message: (!reasons.is_empty()).then(|| reasons.join("; ")),
        };
        let summary = format!(
            "backups of {} now go to {} (strategy {}); run {}{}",
            plan.protected.join(", "),
            plan.target(),
            plan.strategy,
            journal.run_id,
            if reasons.is_empty() {
                String::new()
            } else {
                format!("; {}", reasons.join("; "))
            }
        );
        if self.dry_run() {
            self.remember_dry_journal(key, journal);
            self.metrics.run(PLAYBOOK, "dry_run");
            self.event(
                &object,
                EventType::Normal,
                "FailedOver",
                "Failover",
                format!("would fail over: {summary}"),
            )
            .await;
            return Ok(Written::Done(Outcome {
                phase: Some(Phase::FailedOver),
                requeue: Some(Duration::ZERO),
                note: format!("dry run: would fail over: {summary}"),
            }));
        }
        let mut backup = backup;
        plan::apply(&mut backup, &plan.changes);
        let Some(written) = self
            .write_failed_over(PLAYBOOK, key, object, backup, &journal)
            .await?
        else {
            return Ok(Written::Conflict);
        };
        self.event(
            &written,
            EventType::Normal,
            "FailedOver",
            "Failover",
            summary.clone(),
        )
        .await;
        if plan.target_kind == TargetKind::Buffer && !reasons.is_empty() {
            self.event(
                &written,
                EventType::Warning,
                "FailoverToBuffer",
                "Failover",
                format!("fell back to the PVC buffer: {}", reasons.join("; ")),
            )
            .await;
        }
        Ok(Written::Done(Outcome {
            phase: Some(Phase::FailedOver),
            // The cover backup follows in the next step.
            requeue: Some(Duration::ZERO),
            note: format!("failed over: {summary}"),
        }))
    }

    /// Creates a backup a run owns, unless it exists.
    async fn create_run_backup(
        &self,
        key: &ClusterKey,
        name: &str,
        storage: &str,
        run_id: &str,
        purpose: &str,
    ) -> Result<(), EngineError> {
        let api: Api<PerconaXtraDBClusterBackup> =
            Api::namespaced(self.client.clone(), &key.namespace);
        let backup: PerconaXtraDBClusterBackup = serde_json::from_value(json!({
            "apiVersion": "pxc.percona.com/v1",
            "kind": "PerconaXtraDBClusterBackup",
            "metadata": {
                "name": name,
                "namespace": key.namespace,
                "labels": {
                    RUN_LABEL: run_id,
                    "backstop.percona.com/purpose": purpose,
                    "app.kubernetes.io/managed-by": "backstop",
                },
                "annotations": {STARTED_AT_ANNOTATION: self.now().to_string()},
            },
            "spec": {"pxcCluster": key.name, "storageName": storage},
        }))
        .map_err(|e| EngineError::Kube(kube::Error::SerdeError(e)))?;
        match api.create(&PostParams::default(), &backup).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn cover(
        &self,
        key: &ClusterKey,
        mut object: DynamicObject,
        journal: Option<Journal>,
    ) -> Result<Written, EngineError> {
        let Some(mut journal) = journal else {
            return Ok(Written::Done(Outcome {
                phase: None,
                requeue: None,
                note: "no journal".into(),
            }));
        };
        // A run that moved to the buffer covers again there, under a name of its own.
        let purpose = if journal.moved_to_buffer_at.is_some() {
            "cover-buffer"
        } else {
            "cover"
        };
        let name = run_backup_name(&key.name, purpose, &journal.run_id);
        if self.dry_run() {
            journal.cover_backup = Some(name.clone());
            self.remember_dry_journal(key, journal);
            self.event(
                &object,
                EventType::Normal,
                "CoverBackup",
                "Failover",
                format!("would start backup {name} on storage that backups failed over to"),
            )
            .await;
            return Ok(Written::Done(Outcome {
                phase: Some(Phase::FailedOver),
                // Nothing was written to trigger the next step (watching the secondary), so
                // ask for it, as a real cover's write would.
                requeue: Some(Duration::ZERO),
                note: format!("dry run: would start cover backup {name}"),
            }));
        }
        self.timed(
            "failover",
            "cover_backup",
            self.create_run_backup(
                key,
                &name,
                &journal.target_storage,
                &journal.run_id,
                purpose,
            ),
        )
        .await?;
        journal.cover_backup = Some(name.clone());
        set_journal(&mut object, &journal);
        let Some(written) = self.write(&object).await? else {
            return Ok(Written::Conflict);
        };
        self.event(
            &written,
            EventType::Normal,
            "CoverBackup",
            "Failover",
            format!(
                "started on-demand backup {name} on storage {:?} to cover the backups missed during the outage",
                journal.target_storage
            ),
        )
        .await;
        Ok(Written::Done(Outcome {
            phase: Some(Phase::FailedOver),
            requeue: None,
            note: format!("started cover backup {name}"),
        }))
    }

    async fn revert(
        &self,
        key: &ClusterKey,
        mut object: DynamicObject,
        journal: Option<Journal>,
    ) -> Result<Written, EngineError> {
        const PLAYBOOK: &str = "revert";
        let Some(mut journal) = journal else {
            return Ok(Written::Done(Outcome {
                phase: None,
                requeue: None,
                note: "no journal".into(),
            }));
        };
        if let Some(left) = self.cooldown_left(Some(&journal)) {
            self.notice(
                &object,
                EventType::Normal,
                "RevertWaiting",
                "Revert",
                format!(
                    "alert resolved; the per-cluster cool-down has {}s left",
                    left.as_secs()
                ),
            )
            .await;
            return Ok(Written::Done(Outcome {
                phase: Some(journal.phase),
                requeue: Some(left),
                note: "waiting for the cool-down".into(),
            }));
        }
        // The primary must pass `hold_down_probes` consecutive fresh checks, one per probe
        // interval, before anything is switched back. A reconcile sooner than that (a repeated
        // notification, a watch event) neither checks nor counts.
        if let Some(wait) = self.hold_down_wait(key) {
            return Ok(Written::Done(Outcome {
                phase: Some(journal.phase),
                requeue: Some(wait),
                note: "hold-down: next check of the primary not due yet".into(),
            }));
        }
        let backup = backup_spec(&object);
        let mut problems = Vec::new();
        for name in &journal.protected {
            let definition = journal
                .original_storage(name)
                .cloned()
                .or_else(|| plan::get(&backup, &super::journal::Field::Storage(name.clone())))
                .unwrap_or(Value::Null);
            if let Err(problem) = self
                .timed(
                    PLAYBOOK,
                    "verify_primary",
                    verify_storage(
                        &self.client,
                        &self.config.probe,
                        &key.namespace,
                        &key.name,
                        name,
                        &definition,
                    ),
                )
                .await
            {
                problems.push(problem);
            }
        }
        let needed = self.config.responder.revert.hold_down_probes;
        let passed = {
            let mut hold = self
                .hold_down
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if problems.is_empty() {
                let now = self.now();
                let entry = hold.entry(key.clone()).or_insert(HoldDown {
                    passes: 0,
                    last: now,
                });
                entry.passes += 1;
                entry.last = now;
                entry.passes
            } else {
                hold.remove(key);
                0
            }
        };
        if !problems.is_empty() {
            self.notice(
                &object,
                EventType::Warning,
                "RevertWaiting",
                "Revert",
                format!(
                    "alert resolved but the primary still fails its checks; staying on {:?}: {}",
                    journal.target_storage,
                    problems.join("; ")
                ),
            )
            .await;
            return Ok(Written::Done(Outcome {
                phase: Some(journal.phase),
                requeue: Some(self.probe_interval()),
                note: format!("primary unhealthy: {}", problems.join("; ")),
            }));
        }
        if passed < needed {
            return Ok(Written::Done(Outcome {
                phase: Some(journal.phase),
                requeue: Some(self.probe_interval()),
                note: format!("primary healthy {passed}/{needed} times in a row"),
            }));
        }

        let revert = plan::plan_revert(&backup, &journal);
        let now = self.now();
        let test = self.config.responder.revert.test_backup;
        journal.phase = if test {
            Phase::Verifying
        } else {
            Phase::Reverted
        };
        journal.reverted_at = Some(now);
        journal.kept_edits = revert.kept.clone();
        journal.test_backup = test.then(|| run_backup_name(&key.name, "verify", &journal.run_id));
        journal.finished_at = (!test).then_some(now);
        let kept = if revert.kept.is_empty() {
            String::new()
        } else {
            format!(
                "; kept changes made since the failover to {:?}",
                revert.kept
            )
        };
        let summary = format!(
            "restored the backup settings saved by run {}{kept}",
            journal.run_id
        );
        if self.dry_run() {
            self.remember_dry_journal(key, journal.clone());
            self.metrics.run(PLAYBOOK, "dry_run");
            self.event(
                &object,
                EventType::Normal,
                "Reverted",
                "Revert",
                format!("would have {summary}"),
            )
            .await;
            return Ok(Written::Done(Outcome {
                phase: Some(journal.phase),
                requeue: None,
                note: format!("dry run: would have {summary}"),
            }));
        }
        let mut backup = backup;
        plan::apply_revert(&mut backup, &revert);
        set_backup_spec(&mut object, backup);
        set_journal(&mut object, &journal);
        let Some(written) = self.timed(PLAYBOOK, "write", self.write(&object)).await? else {
            return Ok(Written::Conflict);
        };
        self.forget_hold_down(key);
        self.forget_notice(key);
        self.metrics.set_active(&key.namespace, &key.name, None);
        self.event(
            &written,
            EventType::Normal,
            "Reverted",
            "Revert",
            summary.clone(),
        )
        .await;
        if !revert.kept.is_empty() {
            self.event(
                &written,
                EventType::Warning,
                "RevertKeptEdits",
                "Revert",
                format!(
                    "fields changed by someone else after the failover were kept: {:?}",
                    revert.kept
                ),
            )
            .await;
        }
        if !test {
            self.metrics.run(PLAYBOOK, "succeeded");
        }
        Ok(Written::Done(Outcome {
            phase: Some(journal.phase),
            requeue: test.then_some(Duration::ZERO),
            note: summary,
        }))
    }

    async fn verify(
        &self,
        key: &ClusterKey,
        mut object: DynamicObject,
        journal: Option<Journal>,
    ) -> Result<Written, EngineError> {
        const PLAYBOOK: &str = "revert";
        let Some(mut journal) = journal else {
            return Ok(Written::Done(Outcome {
                phase: None,
                requeue: None,
                note: "no journal".into(),
            }));
        };
        let Some(name) = journal.test_backup.clone() else {
            return Ok(Written::Done(Outcome {
                phase: Some(journal.phase),
                requeue: None,
                note: "no test backup recorded".into(),
            }));
        };
        let storage = journal.protected.first().cloned().unwrap_or_default();
        let timeout = self.config.responder.revert.test_backup_timeout.get();
        // Counted from the test backup's start (see `test_backup_started`); a backup created
        // in this pass has had no time at all.
        let reverted = journal.reverted_at.unwrap_or(journal.failed_over_at);
        let mut elapsed = Duration::ZERO;
        let verdict: Option<Result<(), String>> = if self.dry_run() {
            Some(Ok(()))
        } else {
            let api: Api<PerconaXtraDBClusterBackup> =
                Api::namespaced(self.client.clone(), &key.namespace);
            match api.get_opt(&name).await? {
                None => {
                    self.timed(
                        PLAYBOOK,
                        "test_backup",
                        self.create_run_backup(key, &name, &storage, &journal.run_id, "verify"),
                    )
                    .await?;
                    self.event(
                        &object,
                        EventType::Normal,
                        "TestBackupStarted",
                        "Revert",
                        format!("started test backup {name} on storage {storage:?}"),
                    )
                    .await;
                    None
                }
                Some(backup) => {
                    let stamp = backup
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(STARTED_AT_ANNOTATION));
                    let created = backup.metadata.creation_timestamp.as_ref().map(|t| t.0);
                    let now = self.now();
                    let started =
                        test_backup_started(stamp.map(String::as_str), created, reverted, now);
                    elapsed =
                        Duration::try_from(now.duration_since(started)).unwrap_or(Duration::ZERO);
                    let status = backup.status.unwrap_or_default();
                    match status.state.as_deref() {
                        Some(state::SUCCEEDED) => Some(Ok(())),
                        Some(state::FAILED) => Some(Err(format!(
                            "test backup {name} failed: {}",
                            status.error.unwrap_or_else(|| "no error given".into())
                        ))),
                        _ => None,
                    }
                }
            }
        };
        let verdict = match verdict {
            Some(v) => v,
            None if elapsed >= timeout => Err(format!(
                "test backup {name} did not finish within {}",
                self.config.responder.revert.test_backup_timeout
            )),
            None => {
                return Ok(Written::Done(Outcome {
                    phase: Some(Phase::Verifying),
                    // The backup watch wakes the controller on progress; this is the backstop
                    // for the timeout.
                    requeue: Some(
                        timeout
                            .saturating_sub(elapsed)
                            .min(self.probe_interval().max(Duration::from_secs(1))),
                    ),
                    note: format!("waiting for test backup {name}"),
                }));
            }
        };
        journal.finished_at = Some(self.now());
        let (reason, type_, message) = match &verdict {
            Ok(()) => {
                journal.phase = Phase::Reverted;
                journal.message = None;
                (
                    "RevertVerified",
                    EventType::Normal,
                    format!(
                        "test backup {name} on storage {storage:?} succeeded; the revert is verified"
                    ),
                )
            }
            Err(problem) => {
                journal.phase = Phase::VerificationFailed;
                journal.message = Some(problem.clone());
                (
                    "RevertVerificationFailed",
                    EventType::Warning,
                    format!(
                        "{problem}; staying on the primary and not failing back over automatically"
                    ),
                )
            }
        };
        if self.dry_run() {
            self.remember_dry_journal(key, journal.clone());
        } else {
            set_journal(&mut object, &journal);
            if self.write(&object).await?.is_none() {
                return Ok(Written::Conflict);
            }
        }
        let failed = verdict.is_err();
        self.metrics
            .set_verification_failed(&key.namespace, &key.name, failed);
        self.metrics.run(
            PLAYBOOK,
            if failed {
                "verification_failed"
            } else {
                "succeeded"
            },
        );
        self.event(&object, type_, reason, "Revert", message.clone())
            .await;
        Ok(Written::Done(Outcome {
            phase: Some(journal.phase),
            requeue: None,
            note: message,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(phase: Phase, cover: bool) -> Journal {
        let mut j = super::super::journal::test_journal(phase, vec![]);
        j.cover_backup = cover.then(|| "c".into());
        j
    }

    #[test]
    fn decides_every_combination() {
        use Phase::*;
        for watch in [false, true] {
            let decide = |wants: bool, journal: Option<&Journal>, cover: bool| {
                decide(wants, journal, cover, watch)
            };
            assert_eq!(decide(false, None, true), Step::Idle);
            assert_eq!(decide(true, None, true), Step::Failover);
            assert_eq!(
                decide(true, Some(&journal(FailedOver, false)), true),
                Step::Cover
            );
            assert_eq!(
                decide(false, Some(&journal(FailedOver, true)), true),
                Step::Revert
            );
            assert_eq!(
                decide(false, Some(&journal(Verifying, true)), true),
                Step::Verify
            );
            assert_eq!(
                decide(true, Some(&journal(Verifying, true)), true),
                Step::Failover
            );
            for done in [Reverted, VerificationFailed] {
                assert_eq!(decide(false, Some(&journal(done, true)), true), Step::Idle);
                assert_eq!(
                    decide(true, Some(&journal(done, true)), true),
                    Step::Failover
                );
            }
        }
        // Failed over to the secondary, the cover backup started (or not wanted): the
        // secondary is watched only when moving to the buffer is on.
        let on_secondary = journal(FailedOver, true);
        let uncovered = journal(FailedOver, false);
        for (journal, cover) in [(&on_secondary, true), (&uncovered, false)] {
            assert_eq!(decide(true, Some(journal), cover, false), Step::Idle);
            assert_eq!(
                decide(true, Some(journal), cover, true),
                Step::WatchSecondary
            );
        }
        // On the buffer there is nothing to watch.
        let mut on_buffer = journal(FailedOver, true);
        on_buffer.target_kind = TargetKind::Buffer;
        assert_eq!(decide(true, Some(&on_buffer), true, true), Step::Idle);
        // A run that moved to the buffer still covers first.
        on_buffer.cover_backup = None;
        assert_eq!(decide(true, Some(&on_buffer), true, true), Step::Cover);
    }

    #[test]
    fn the_test_backup_timeout_starts_at_a_plausible_time() {
        let t = |s: i64| jiff::Timestamp::from_second(1_800_000_000 + s).unwrap();
        let (reverted, now) = (t(0), t(3_600));
        let stamp = t(1_000).to_string();
        // Backstop's stamp first, then the API server's creation time.
        assert_eq!(
            test_backup_started(Some(&stamp), Some(t(2_000)), reverted, now),
            t(1_000)
        );
        assert_eq!(
            test_backup_started(None, Some(t(2_000)), reverted, now),
            t(2_000)
        );
        assert_eq!(
            test_backup_started(Some("not a time"), Some(t(2_000)), reverted, now),
            t(2_000)
        );
        // Implausible times are passed over: before the revert, or far in the future.
        let future = t(3_600 + 86_400).to_string();
        assert_eq!(
            test_backup_started(Some(&future), Some(t(-5)), reverted, now),
            reverted
        );
        // A little ahead is clock skew, believed.
        let skewed = t(3_660).to_string();
        assert_eq!(
            test_backup_started(Some(&skewed), None, reverted, now),
            t(3_660)
        );
        assert_eq!(test_backup_started(None, None, reverted, now), reverted);
    }

    #[test]
    fn run_backup_names_are_stable_and_valid() {
        let a = run_backup_name("cluster1", "verify", "0f3c2a9e-1111-2222");
        assert_eq!(a, "backstop-verify-cluster1-0f3c2a9e");
        assert_eq!(
            a,
            run_backup_name("cluster1", "verify", "0f3c2a9e-1111-2222")
        );
        let long = run_backup_name(&"x".repeat(80), "cover", "abc");
        assert!(long.len() <= 63 && !long.ends_with('-'));
    }
}
