//! Failover: switch backups to the first secondary, in the policy's order, that passes a
//! check made just now, else to the PVC buffer; within the per-cluster cool-down and the
//! global limit; refused, with an Event, when the cluster has nothing to protect or nowhere
//! to go.

use std::time::Duration;

use kube::api::DynamicObject;
use serde_json::Value;

use crate::k8s::events::EventType;

use super::super::cluster::backup_spec;
use super::super::effect::{Effect, Note, Plan, Playbook, RunResult, Stage};
use super::super::engine::{Engine, EngineError};
use super::super::journal::{JOURNAL_VERSION, Journal, ORDERED_JOURNAL_VERSION, Phase, TargetKind};
use super::super::plan::{self, Destination, FailoverPlan, PlanError};
use super::Context;

const PLAYBOOK: Playbook = Playbook::Failover;

/// What a failover is planned from.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The cluster's `spec.backup`.
    pub backup: Value,
    /// The journal of the previous run, if any.
    pub previous: Option<Journal>,
    /// Managed clusters that failed over within the global window (0 when the cool-down
    /// already holds the run back: not counted then).
    pub recent_failovers: u32,
    /// The failover to each secondary in order, as planned, with its fresh check (`None`:
    /// not checked, because there is nothing to check, a rate limit holds the run back, or
    /// a better secondary passed). Never empty: a policy without secondaries has the first
    /// one's [`PlanError::NoTarget`].
    pub secondaries: Vec<Candidate>,
    /// The id the run gets if it happens.
    pub run_id: String,
    /// How far the failure of each protected storage reaches, as the prober judges it
    /// (`None`: this process does not probe, or no probed target serves them).
    pub blast: Option<String>,
}

/// One secondary a failover may go to.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The failover to it, as planned.
    pub plan: Result<FailoverPlan, PlanError>,
    /// Its fresh check.
    pub check: Option<Result<(), String>>,
}

/// Reads what a failover needs: the other clusters' journals (for the global limit) and
/// fresh checks of the secondaries in order until one passes; neither when a rate limit
/// holds the run back anyway.
///
/// # Errors
///
/// [`EngineError`] when reading a cluster fails.
pub async fn observe(
    engine: &Engine,
    ctx: &Context<'_>,
    object: &DynamicObject,
    previous: Option<Journal>,
) -> Result<Observed, EngineError> {
    let backup = backup_spec(object);
    let policy = &ctx.managed.failover;
    let ranks = policy.ordered_secondaries().count().max(1);
    let secondaries = (0..ranks)
        .map(|rank| Candidate {
            plan: plan::plan_failover(&backup, policy, Destination::Secondary(rank)),
            check: None,
        })
        .collect();
    let mut observed = Observed {
        backup,
        previous,
        recent_failovers: 0,
        secondaries,
        run_id: uuid::Uuid::new_v4().to_string(),
        blast: None,
    };
    if let Some(health) = engine.health() {
        let said: Vec<String> = plan::protected_storages(&observed.backup, &ctx.managed.failover)
            .iter()
            .filter_map(|storage| {
                let (_, v) = health.verdict_of(&ctx.key.namespace, &ctx.key.name, storage)?;
                Some(format!("{storage}: {} ({})", v.scope.as_str(), v.reason))
            })
            .collect();
        observed.blast = (!said.is_empty()).then(|| said.join("; "));
    }
    if ctx.cooldown_left(observed.previous.as_ref()).is_some() {
        return Ok(observed);
    }
    observed.recent_failovers = engine.recent_failovers(ctx.now).await?;
    if observed.recent_failovers >= ctx.config.responder.rate_limits.global_max_failovers {
        return Ok(observed);
    }
    for candidate in &mut observed.secondaries {
        let Ok(target) = &candidate.plan else {
            continue;
        };
        let definition = target.verify.clone().unwrap_or(Value::Null);
        let check = engine
            .verify(
                PLAYBOOK,
                Stage::VerifySecondary,
                ctx.key,
                &target.target_storage,
                &definition,
            )
            .await;
        let passed = check.is_ok();
        candidate.check = Some(check);
        if passed {
            break;
        }
    }
    Ok(observed)
}

/// Plans the failover.
pub fn plan(ctx: &Context<'_>, observed: Observed) -> Plan {
    let Observed {
        backup,
        previous,
        recent_failovers,
        secondaries,
        run_id,
        blast,
    } = observed;
    let phase = previous.as_ref().map(|j| j.phase);
    if let Some(left) = ctx.cooldown_left(previous.as_ref()) {
        return Plan::report(phase, Some(left), "rate limited (per-cluster cool-down)").with([
            Effect::CountRun(PLAYBOOK, RunResult::RateLimited),
            Effect::Notice(Note::new(
                EventType::Warning,
                "FailoverRateLimited",
                "Failover",
                format!(
                    "failover wanted but the per-cluster cool-down has {}s left",
                    left.as_secs()
                ),
            )),
        ]);
    }
    let retry = Some(ctx.probe_interval());
    let limits = &ctx.config.responder.rate_limits;
    if recent_failovers >= limits.global_max_failovers {
        return Plan::report(phase, retry, "rate limited (global)").with([
            Effect::CountRun(PLAYBOOK, RunResult::RateLimited),
            Effect::Notice(Note::new(
                EventType::Warning,
                "FailoverRateLimited",
                "Failover",
                format!(
                    "failover wanted but {recent_failovers} clusters failed over within {}; the global limit is {}",
                    limits.global_window, limits.global_max_failovers
                ),
            )),
        ]);
    }

    let mut reasons = Vec::new();
    let mut chosen = None;
    let several = secondaries.len() > 1;
    for (rank, candidate) in secondaries.into_iter().enumerate() {
        let which = if several {
            format!("secondary {}", rank + 1)
        } else {
            "secondary".to_owned()
        };
        match (candidate.plan, candidate.check) {
            (Ok(target), Some(Ok(()))) => {
                chosen = Some(target);
                break;
            }
            (Ok(_), Some(Err(problem))) => reasons.push(format!("{which} unhealthy: {problem}")),
            (Ok(_), None) => reasons.push(format!("the {which} was not checked")),
            (Err(e @ (PlanError::NothingProtected(_) | PlanError::NoBackupSpec)), _) => {
                return Plan::report(phase, None, e.to_string()).with([
                    Effect::CountRun(PLAYBOOK, RunResult::NoViableTarget),
                    Effect::Notice(Note::new(
                        EventType::Warning,
                        "FailoverRefused",
                        "Failover",
                        format!("nothing changed: {e}"),
                    )),
                ]);
            }
            (Err(e), _) => reasons.push(e.to_string()),
        }
    }
    if chosen.is_none() {
        match plan::plan_failover(&backup, &ctx.managed.failover, Destination::Buffer) {
            Ok(target) => chosen = Some(target),
            Err(e) => reasons.push(e.to_string()),
        }
    }
    let Some(target) = chosen else {
        let reasons = reasons.join("; ");
        return Plan::report(phase, retry, format!("no viable target: {reasons}")).with([
            Effect::CountRun(PLAYBOOK, RunResult::NoViableTarget),
            Effect::Notice(Note::new(
                EventType::Warning,
                "FailoverRefused",
                "Failover",
                format!("no viable failover target, nothing changed: {reasons}"),
            )),
        ]);
    };

    // A Backstop that knows one secondary only must not continue a run on another.
    let version = if matches!(target.destination, Destination::Secondary(rank) if rank > 0) {
        ORDERED_JOURNAL_VERSION
    } else {
        JOURNAL_VERSION
    };
    let journal = Journal {
        version,
        run_id,
        phase: Phase::FailedOver,
        strategy: target.strategy.to_owned(),
        target_kind: target.target_kind,
        target_storage: target.target_storage.clone(),
        target_secondary: target.secondary.clone(),
        protected: target.protected.clone(),
        changes: target.changes.clone(),
        failed_over_at: ctx.now,
        cover_backup: None,
        cancelled_backups: Vec::new(),
        blast_radius: blast.clone(),
        moved_to_buffer_at: None,
        moves: 0,
        moved_at: None,
        reverted_at: None,
        test_backup: None,
        finished_at: None,
        kept_edits: Vec::new(),
        message: (!reasons.is_empty()).then(|| reasons.join("; ")),
    };
    let summary = format!(
        "backups of {} now go to {} (strategy {}); run {}{}{}",
        target.protected.join(", "),
        target.target(),
        target.strategy,
        journal.run_id,
        if reasons.is_empty() {
            String::new()
        } else {
            format!("; {}", reasons.join("; "))
        },
        blast
            .as_ref()
            .map(|b| format!("; blast radius: {b}"))
            .unwrap_or_default()
    );
    let mut changed = backup;
    plan::apply(&mut changed, &target.changes);
    let mut effects = vec![
        Effect::WriteCluster {
            playbook: PLAYBOOK,
            backup: Some(changed),
            journal,
        },
        Effect::CountRun(PLAYBOOK, RunResult::Succeeded),
        Effect::Event(
            Note::new(EventType::Normal, "FailedOver", "Failover", summary.clone())
                .when_recorded(format!("would fail over: {summary}")),
        ),
    ];
    if target.target_kind == TargetKind::Buffer && !reasons.is_empty() {
        effects.push(Effect::Event(Note::new(
            EventType::Warning,
            "FailoverToBuffer",
            "Failover",
            format!("fell back to the PVC buffer: {}", reasons.join("; ")),
        )));
    }
    // The cover backup follows in the next step.
    Plan::report(
        Some(Phase::FailedOver),
        Some(Duration::ZERO),
        format!("failed over: {summary}"),
    )
    .with(effects)
    .when_recorded(format!("would fail over: {summary}"))
}
