//! The move off a failing secondary: while the cluster is failed over to its secondary and
//! the alert still fires, the secondary is checked once per probe interval (the same fresh
//! HeadBucket and canary as the failover's preflight); after
//! `responder.failover.buffer_after_secondary_failures` failed checks in a row, backups move
//! to the buffer.
//!
//! The move keeps the run: same run id, same `failed_over_at` (so rate limits and the
//! cool-down see one failover), and a journal whose changes are the buffer's against the
//! *original* settings ([`plan::plan_move_to_buffer`]), written in one conditional replace
//! with the new spec. A crash leaves the cluster on the secondary or on the buffer, never in
//! between, and the revert restores the original exactly either way. A field a human
//! changed since the failover stops the move: the originals could no longer be derived
//! exactly, so the cluster stays where it is and an Event says why.
//!
//! The checks keep the prober's state from one to the next: the canary runs every
//! `probe.canary.interval` while the secondary passes and in every check once it failed,
//! and a canary the store would not let us delete is deleted by a later check. The count of
//! failed checks lives in the replica's [memory](super::super::memory).

use std::time::Duration;

use kube::api::DynamicObject;
use serde_json::Value;

use crate::k8s::events::EventType;
use crate::probe::cycle::TargetState;

use super::super::cluster::backup_spec;
use super::super::effect::{Effect, Note, Plan, Playbook, RunResult, Stage};
use super::super::engine::Engine;
use super::super::journal::{Field, Journal, MOVED_JOURNAL_VERSION, Phase};
use super::super::plan;
use super::Context;

const PLAYBOOK: Playbook = Playbook::MoveToBuffer;

/// One cluster's watch of its secondary.
#[derive(Debug, Default)]
pub struct SecondaryWatch {
    /// Consecutive failed checks.
    pub failures: u32,
    /// When the last check ran.
    pub last: Option<jiff::Timestamp>,
    /// The checks' probe state (canary schedule, leftover canaries).
    pub probe: TargetState,
}

/// What the watch of the secondary is planned from.
#[derive(Debug, Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "one per step, moved straight into the plan"
)]
pub enum Observed {
    /// The next check is due in this long; nothing was checked.
    NotDue(Duration),
    /// The secondary was checked now.
    Checked {
        /// The cluster's `spec.backup`.
        backup: Value,
        /// The run on the secondary.
        journal: Journal,
        /// Failed checks in a row, this one included.
        failures: u32,
        /// This check.
        check: Result<(), String>,
    },
}

/// Checks the secondary `journal`'s run failed over to, when due.
pub async fn observe(
    engine: &Engine,
    ctx: &Context<'_>,
    object: &DynamicObject,
    journal: Journal,
) -> Observed {
    let memory = engine.applier().memory();
    if let Some(wait) = memory
        .secondary_checked(ctx.key)
        .and_then(|last| ctx.next_check_in(last))
    {
        return Observed::NotDue(wait);
    }
    let mut watch = memory.take_secondary(ctx.key);
    let backup = backup_spec(object);
    let name = &journal.target_storage;
    // The entry on the cluster is what the backup Job uses; the entry the failover wrote
    // stands in where the cluster has none of that name.
    let definition = plan::get(&backup, &Field::Storage(name.clone()))
        .or_else(|| journal.written_storage(name).cloned())
        .unwrap_or(Value::Null);
    let check = engine
        .check(
            PLAYBOOK,
            Stage::VerifySecondary,
            ctx.key,
            name,
            &definition,
            &mut watch.probe,
        )
        .await;
    watch.last = Some(ctx.now);
    watch.failures = if check.is_ok() { 0 } else { watch.failures + 1 };
    let failures = watch.failures;
    memory.put_secondary(ctx.key, watch);
    Observed::Checked {
        backup,
        journal,
        failures,
        check,
    }
}

/// Plans the next move: wait, warn, refuse, or move to the buffer.
pub fn plan(ctx: &Context<'_>, observed: Observed) -> Plan {
    let interval = Some(ctx.probe_interval());
    let (backup, journal, failures, problem) = match observed {
        Observed::NotDue(wait) => {
            return stays(Some(wait), "next check of the secondary not due yet".into());
        }
        Observed::Checked { check: Ok(()), .. } => {
            return stays(interval, "secondary healthy".into());
        }
        Observed::Checked {
            backup,
            journal,
            failures,
            check: Err(problem),
        } => (backup, journal, failures, problem),
    };
    let name = &journal.target_storage;
    let secondary = plan::describe_target(
        journal.target_kind,
        &journal.strategy,
        name,
        journal.written_storage(name),
    );
    let needed = ctx
        .config
        .responder
        .failover
        .buffer_after_secondary_failures;
    if failures < needed {
        return stays(
            interval,
            format!("secondary unhealthy ({failures} of {needed}): {problem}"),
        )
        .with([Effect::Notice(Note::new(
            EventType::Warning,
            "SecondaryUnhealthy",
            "Failover",
            format!(
                "{secondary} failed {failures} check(s) in a row; backups move to the \
                 buffer after {needed}: {problem}"
            ),
        ))]);
    }
    let (moved, target) = match plan::plan_move_to_buffer(&backup, &journal, &ctx.managed.failover)
    {
        Ok(planned) => planned,
        Err(e) => {
            tracing::warn!(cluster = %ctx.key, %problem, "the secondary keeps failing its checks");
            // Neither the count nor the problem (request ids) in the text: the notice is
            // said once while it lasts; SecondaryUnhealthy Events and the log say why.
            return stays(interval, format!("cannot move to the buffer: {e}")).with([
                Effect::CountRun(PLAYBOOK, RunResult::Refused),
                Effect::Notice(Note::new(
                    EventType::Warning,
                    "MoveToBufferRefused",
                    "Failover",
                    format!("{secondary} keeps failing its checks, but backups stay on it: {e}"),
                )),
            ]);
        }
    };
    let reason = format!("{secondary} failed {failures} checks in a row: {problem}");
    let next = Journal {
        version: MOVED_JOURNAL_VERSION,
        strategy: target.strategy.to_owned(),
        target_kind: target.target_kind,
        target_storage: target.target_storage.clone(),
        protected: target.protected.clone(),
        changes: target.changes.clone(),
        cover_backup: None,
        moved_to_buffer_at: Some(ctx.now),
        message: Some(reason.clone()),
        ..journal
    };
    let summary = format!(
        "backups of {} moved to {}: {reason}; run {}",
        target.protected.join(", "),
        target.target(),
        next.run_id
    );
    // The cover backup on the buffer follows in the next step.
    stays(Some(Duration::ZERO), summary.clone())
        .with([
            Effect::WriteCluster {
                playbook: PLAYBOOK,
                backup: Some(moved),
                journal: next,
            },
            Effect::CountRun(PLAYBOOK, RunResult::Succeeded),
            Effect::Event(
                Note::new(
                    EventType::Warning,
                    "MovedToBuffer",
                    "Failover",
                    summary.clone(),
                )
                .when_recorded(format!("would move: {summary}")),
            ),
        ])
        .when_recorded(format!("would move: {summary}"))
}

/// A plan that leaves the cluster failed over.
fn stays(requeue: Option<Duration>, note: String) -> Plan {
    Plan::report(Some(Phase::FailedOver), requeue, note)
}
