//! The reconciler: converges one managed cluster to its recorded intent, one step per call,
//! idempotently.
//!
//! Each call re-reads the cluster (through the [`Applier`], so a dry run sees what it
//! recorded), decides the single next step from the intent and the journal
//! ([`playbook::decide`]), lets that step's playbook observe what it needs and plan, and
//! hands the plan to the applier. Every write replaces the cluster under its
//! resourceVersion, with the journal in the same request as the spec change, so a crash
//! leaves either the old state or the new one, never half of a change. A 409 (someone wrote
//! in between, a human or another replica) re-reads and re-plans from scratch, so a
//! concurrent edit is never overwritten.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::clock::Clock;
use kube::api::DynamicObject;

use crate::config::Config;
use crate::k8s::events::EventType;
use crate::probe::cycle::TargetState;

use super::applier::{Applied, Applier, ApplyError, RecordError, Recorded};
use super::cluster::{ClusterKey, PAUSE_ANNOTATION, is_paused, read_intent, read_journal};
use super::effect::{Effect, Note, Outcome, Plan, Playbook, Stage};
use super::intent::Intent;
use super::journal::{JOURNAL_ANNOTATION, Journal, Phase};
use super::metrics::ResponderMetrics;
use super::playbook::{self, Context, Step, cancel, cover, failover, retarget, revert, verify};
use super::verify::{check_storage, verify_storage};
use crate::managed::{self as opt_in, Resolution};

/// Conflicts retried within one call before giving up until the next trigger.
const MAX_CONFLICTS: usize = 5;

/// Why a step could not run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A Kubernetes request failed; the step is retried.
    #[error("Kubernetes request failed: {0}")]
    Kube(#[from] kube::Error),
    /// Carrying out the plan failed; the step is retried.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The cluster kept changing under us.
    #[error(
        "cluster {0} changed {MAX_CONFLICTS} times while a step was being written; retrying later"
    )]
    Conflicts(ClusterKey),
    /// The cluster is neither in the configuration's `clusters` nor opted in.
    #[error("cluster {0} is not managed by Backstop (not in `clusters`, not opted in)")]
    Unmanaged(ClusterKey),
}

/// The engine. One per process; shared by the webhook (intents), the controller and the CLI.
pub struct Engine {
    health: std::sync::OnceLock<Arc<crate::probe::health::DownSince>>,
    client: kube::Client,
    config: Arc<Config>,
    metrics: ResponderMetrics,
    clock: Arc<dyn Clock>,
    applier: Applier,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("applier", &self.applier)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Builds the engine; it writes unless `responder.dry_run` is set.
    pub fn new(
        client: kube::Client,
        config: Arc<Config>,
        metrics: ResponderMetrics,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        let applier = Applier::new(
            client.clone(),
            metrics.clone(),
            clock.clone(),
            config.responder.dry_run,
        );
        Arc::new(Self {
            client,
            config,
            metrics,
            clock,
            applier,
            health: std::sync::OnceLock::new(),
        })
    }

    /// Gives the engine the prober's record, so a failover can say how far the failure
    /// reaches (its blast radius). Without it (`backstop failover` by hand) it says nothing.
    pub fn set_health(&self, health: Arc<crate::probe::health::DownSince>) {
        let _ = self.health.set(health);
    }

    /// The prober's record, when this process probes.
    pub fn health(&self) -> Option<&Arc<crate::probe::health::DownSince>> {
        self.health.get()
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

    /// What carries out the plans (and records them in a dry run).
    pub fn applier(&self) -> &Applier {
        &self.applier
    }

    /// Whether and how the cluster `object` is managed ([`opt_in::resolve_object`]).
    pub fn resolution(&self, object: &DynamicObject) -> Resolution {
        opt_in::resolve_object(&self.config, object)
    }

    /// The engine's clock: what every time it records (journal, intents, backups) is read
    /// from, so a test clock moves all of them together.
    pub fn now(&self) -> jiff::Timestamp {
        self.clock.now()
    }

    /// Merges into the intent recorded on `key` (see [`Applier::record_intent`]).
    ///
    /// # Errors
    ///
    /// [`RecordError`] when a request fails or the cluster keeps changing.
    pub async fn record_intent(
        &self,
        key: &ClusterKey,
        merge: impl Fn(&mut Intent) -> bool,
    ) -> Result<Recorded, RecordError> {
        self.applier.record_intent(key, merge).await
    }

    /// Forgets what this replica observed before it (re)gained leadership: hold-down passes,
    /// the checks of secondaries and the last notice per cluster. Another replica led in
    /// between and may have seen the primary fail, so checks from an earlier term are not
    /// consecutive with the next.
    pub fn leadership_gained(&self) {
        self.applier.memory().clear();
    }

    /// Runs the next step for `key`.
    ///
    /// # Errors
    ///
    /// [`EngineError`] when the cluster is not managed, a request failed, or the cluster kept
    /// changing; the caller retries.
    pub async fn reconcile(&self, key: &ClusterKey) -> Result<Outcome, EngineError> {
        for _ in 0..MAX_CONFLICTS {
            match self.step(key).await? {
                Applied::Done(outcome) => return Ok(outcome),
                Applied::Conflict => {
                    tracing::info!(cluster = %key, "cluster changed while writing; re-reading and re-planning");
                }
            }
        }
        Err(EngineError::Conflicts(key.clone()))
    }

    async fn step(&self, key: &ClusterKey) -> Result<Applied, EngineError> {
        let Some(object) = self.applier.read(key).await? else {
            self.metrics.set_active(&key.namespace, &key.name, None);
            return Ok(Applied::Done(
                Plan::report(None, None, "cluster not found").outcome,
            ));
        };
        // Decided from the object just read, so an annotation changed a moment ago counts.
        let managed = match self.resolution(&object) {
            Resolution::Managed(managed) => {
                self.metrics
                    .set_opt_in_invalid(&key.namespace, &key.name, false);
                managed.cluster
            }
            Resolution::Unmanaged => return Err(EngineError::Unmanaged(key.clone())),
            Resolution::Invalid(problems) => {
                self.metrics
                    .set_opt_in_invalid(&key.namespace, &key.name, true);
                // A run in progress is said too: until the opt-in is fixed, nothing reverts it.
                let running = match read_journal(&object) {
                    Ok(Some(j)) if matches!(j.phase, Phase::FailedOver | Phase::Verifying) => {
                        format!(
                            "; its journal says {} (run {}): fix the opt-in so Backstop can revert it",
                            j.phase.as_str(),
                            j.run_id
                        )
                    }
                    _ => String::new(),
                };
                let message = format!(
                    "not managed: the cluster asks to be, but {}{running}",
                    problems.join("; ")
                );
                let plan = Plan::report(None, None, message.clone()).with([Effect::Notice(
                    Note::new(EventType::Warning, "OptInInvalid", "OptIn", message),
                )]);
                return Ok(self.applier.apply(object, plan).await?);
            }
        };
        let managed = &managed;
        if is_paused(&object) {
            return Ok(Applied::Done(
                Plan::report(
                    None,
                    None,
                    format!("paused by the {PAUSE_ANNOTATION} annotation; left alone"),
                )
                .outcome,
            ));
        }
        let journal = match read_journal(&object) {
            Ok(journal) => journal,
            Err(problem) => {
                let message = format!(
                    "refusing to act: {problem}; fix or remove the {JOURNAL_ANNOTATION} annotation"
                );
                let plan =
                    Plan::report(None, None, message.clone()).with([Effect::Notice(Note::new(
                        EventType::Warning,
                        "JournalUnreadable",
                        "Reconcile",
                        message,
                    ))]);
                return Ok(self.applier.apply(object, plan).await?);
            }
        };
        let intent = read_intent(&object);
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
        let ctx = Context {
            key,
            managed,
            config: &self.config,
            now: self.now(),
        };
        let step = playbook::decide(
            intent.wants_failover(),
            journal.as_ref(),
            self.config.responder.failover.on_demand_backup,
            journal
                .as_ref()
                .is_some_and(|j| retarget::watches(j, &managed.failover, &ctx)),
        );
        if step != Step::WatchTargets {
            // Checks count only while nothing else happens: a resolved alert, a new failover
            // or a pending cover backup in between starts the counts over.
            self.applier.memory().forget_targets(key);
        }
        // While failed over and still wanted so, hung backups to the failed storage come
        // first: with the operator's lock they hold back every later backup, the cover
        // backup included (playbook::cancel).
        let hung = match journal
            .as_ref()
            .filter(|j| j.phase == Phase::FailedOver && intent.wants_failover())
        {
            Some(j) => Some(Box::pin(cancel::observe(self, &ctx, &object, j)).await?),
            None => None,
        };
        if let (Some(observed), Some(j)) = (&hung, &journal)
            && observed.cancels()
        {
            let mut plan = cancel::plan(j.clone(), observed);
            plan.effects.splice(0..0, cancel::redo(observed));
            return Ok(Box::pin(self.applier.apply(object, plan)).await?);
        }
        // Each step's future on the heap: together they would make every reconcile's future
        // as large as the largest (several S3 round trips deep), which overflows a 2 MiB
        // thread stack in debug builds when polled in place.
        let mut plan = match (step, journal.clone()) {
            (Step::Idle, journal) => Plan::report(journal.map(|j| j.phase), None, "nothing to do"),
            (Step::Failover, previous) => {
                let observed = Box::pin(failover::observe(self, &ctx, &object, previous)).await?;
                failover::plan(&ctx, observed)
            }
            (Step::Cover, journal) => cover::plan(&ctx, journal),
            (_, None) => Plan::report(None, None, "no journal"),
            (Step::Revert, Some(journal)) => {
                let observed = Box::pin(revert::observe(self, &ctx, &object, journal)).await;
                revert::plan(&ctx, observed)
            }
            (Step::Verify, Some(journal)) => {
                match Box::pin(verify::observe(self, &ctx, journal)).await? {
                    Ok(observed) => verify::plan(&ctx, observed),
                    Err(plan) => plan,
                }
            }
            (Step::WatchTargets, Some(journal)) => {
                let observed = Box::pin(retarget::observe(self, &ctx, &object, journal)).await;
                retarget::plan(&ctx, observed)
            }
        };
        if let (Some(observed), Some(j)) = (&hung, journal) {
            plan.effects.splice(0..0, cancel::redo(observed));
            // Backups left running because their storage passed: said (once) and counted,
            // and looked at again a probe interval later, not on every reconcile.
            let refusals = cancel::plan(j, observed);
            let wait = if observed.due.is_empty() {
                observed.wait
            } else {
                plan.effects.extend(
                    refusals
                        .effects
                        .into_iter()
                        .filter(|e| matches!(e, Effect::Notice(_) | Effect::CountCancel(_))),
                );
                Some(ctx.probe_interval())
            };
            if let Some(wait) = wait {
                plan.outcome.requeue = Some(plan.outcome.requeue.map_or(wait, |r| r.min(wait)));
            }
        }
        Ok(Box::pin(self.applier.apply(object, plan)).await?)
    }

    /// Says (once) that the cluster `object`, which Backstop does not manage (any more: it
    /// left `clusters[]`, or its opt-in was withdrawn), still runs on a failover target by
    /// its journal. Backstop does not act on it: the human who withdrew it decides.
    ///
    /// # Errors
    ///
    /// [`EngineError`] when the Event cannot be written.
    pub async fn report_unmanaged(&self, object: DynamicObject) -> Result<(), EngineError> {
        let Ok(Some(journal)) = read_journal(&object) else {
            return Ok(());
        };
        if !matches!(journal.phase, Phase::FailedOver | Phase::Verifying) {
            return Ok(());
        }
        let message = format!(
            "not managed by Backstop any more (not in clusters[], not opted in), but its journal \
             says {} (run {}): nothing will revert it; opt it in again, or restore the settings \
             saved in the {JOURNAL_ANNOTATION} annotation by hand",
            journal.phase.as_str(),
            journal.run_id
        );
        let plan = Plan::report(Some(journal.phase), None, message.clone()).with([Effect::Notice(
            Note::new(
                EventType::Warning,
                "UnmanagedWhileFailedOver",
                "OptIn",
                message,
            ),
        )]);
        self.applier.apply(object, plan).await?;
        Ok(())
    }

    /// Failovers of managed clusters within the global window, from their journals (so the
    /// limit holds across restarts and replicas).
    ///
    /// # Errors
    ///
    /// [`EngineError`] when reading a cluster fails.
    pub async fn recent_failovers(&self, now: jiff::Timestamp) -> Result<u32, EngineError> {
        let window = self.config.responder.rate_limits.global_window.get();
        let mut count = 0;
        for key in self.managed_keys().await? {
            let journal: Option<Journal> = self
                .applier
                .read(&key)
                .await?
                .and_then(|o| read_journal(&o).ok().flatten());
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

    /// Every managed cluster: those in `clusters[]`, and with opt-in on, every cluster in
    /// the watched namespaces that opted in, listed from the API server (a failover is rare;
    /// the count it limits must hold across replicas, so it is not read from a cache).
    async fn managed_keys(&self) -> Result<Vec<ClusterKey>, EngineError> {
        let mut keys: Vec<ClusterKey> = self
            .config
            .clusters
            .iter()
            .map(ClusterKey::of_managed)
            .collect();
        if self.config.opt_in.enabled() {
            let scopes = self.config.kubernetes.scopes();
            for object in super::cluster::list_clusters(&self.client, &scopes).await? {
                if let Resolution::Managed(m) = self.resolution(&object)
                    && m.source != opt_in::Source::Config
                {
                    keys.push(ClusterKey::of(&object));
                }
            }
        }
        Ok(keys)
    }

    /// A fresh check of a storage of `key` (HeadBucket and canary), timed as `stage`.
    ///
    /// # Errors
    ///
    /// A one-line description of what failed.
    pub async fn verify(
        &self,
        playbook: Playbook,
        stage: Stage,
        key: &ClusterKey,
        storage: &str,
        definition: &Value,
    ) -> Result<(), String> {
        let started = Instant::now();
        let checked = verify_storage(
            &self.client,
            &self.config.probe,
            &key.namespace,
            &key.name,
            storage,
            definition,
        )
        .await;
        self.timed(playbook, stage, started);
        checked
    }

    /// Like [`Engine::verify`], for a storage checked again and again (see
    /// [`check_storage`]).
    ///
    /// # Errors
    ///
    /// A one-line description of what failed.
    pub async fn check(
        &self,
        playbook: Playbook,
        stage: Stage,
        key: &ClusterKey,
        storage: &str,
        definition: &Value,
        state: &mut TargetState,
    ) -> Result<(), String> {
        let started = Instant::now();
        let checked = check_storage(
            &self.client,
            &self.config.probe,
            &key.namespace,
            &key.name,
            storage,
            definition,
            state,
        )
        .await;
        self.timed(playbook, stage, started);
        checked
    }

    fn timed(&self, playbook: Playbook, stage: Stage, started: Instant) {
        self.metrics.step(
            playbook.as_str(),
            stage.as_str(),
            started.elapsed().as_secs_f64(),
        );
    }
}
