//! The step that moves a cluster off a failing secondary: while the cluster is failed over
//! to its secondary and the alert still fires, the secondary is checked once per probe
//! interval (the same fresh HeadBucket and canary as the failover's preflight); after
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
//! The checks keep the prober's state from one to the next ([`check_storage`]): the canary
//! runs every `probe.canary.interval` while the secondary passes and in every check once it
//! failed, and a canary the store would not let us delete is deleted by a later check.
//!
//! The count of failed checks lives in memory: a restart or a new leader starts it afresh,
//! and so does any step other than this one (a resolved alert, say), which can only delay a
//! move, never cause one.

use std::sync::PoisonError;
use std::time::Duration;

use kube::api::DynamicObject;
use serde_json::Value;

use super::backup_spec;
use super::{ClusterKey, Engine, EngineError, Outcome, Written};
use crate::config::ManagedCluster;
use crate::events::EventType;
use crate::probe::cycle::TargetState;
use crate::responder::journal::{Field, Journal, MOVED_JOURNAL_VERSION, Phase};
use crate::responder::plan;
use crate::responder::verify::check_storage;

const PLAYBOOK: &str = "move_to_buffer";

/// One cluster's watch of its secondary.
#[derive(Debug, Default)]
pub(super) struct SecondaryWatch {
    /// Consecutive failed checks.
    failures: u32,
    /// When the last check ran.
    last: Option<jiff::Timestamp>,
    /// The checks' probe state (canary schedule, leftover canaries).
    probe: TargetState,
}

impl Engine {
    /// Checks the secondary `journal`'s run failed over to, and moves to the buffer after
    /// enough failed checks in a row.
    pub(super) async fn watch_secondary(
        &self,
        key: &ClusterKey,
        managed: &ManagedCluster,
        object: DynamicObject,
        journal: Option<Journal>,
    ) -> Result<Written, EngineError> {
        let Some(journal) = journal else {
            return Ok(done(None, "no journal".into()));
        };
        let interval = self.probe_interval();
        let last = self
            .secondary_checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .and_then(|w| w.last);
        if let Some(wait) = last.and_then(|last| self.next_check_in(last)) {
            return Ok(done(
                Some(wait),
                "next check of the secondary not due yet".into(),
            ));
        }
        // Taken out while the check runs (a cluster is reconciled by one task at a time)
        // and put back after, so no lock is held across the check.
        let mut watch = self
            .secondary_checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key)
            .unwrap_or_default();
        let backup = backup_spec(&object);
        let name = &journal.target_storage;
        let on_cluster = plan::get(&backup, &Field::Storage(name.clone()));
        let written = journal.written_storage(name).cloned();
        // The entry on the cluster is what the backup Job uses. A dry run never wrote it:
        // the entry the failover would have written stands in (with `in-place` the
        // cluster's entry of that name is still the failing primary's).
        let definition = if self.dry_run() {
            written.or(on_cluster)
        } else {
            on_cluster.or(written)
        }
        .unwrap_or(Value::Null);
        let checked = self
            .timed(
                PLAYBOOK,
                "verify_secondary",
                check_storage(
                    &self.client,
                    &self.config.probe,
                    &key.namespace,
                    &key.name,
                    name,
                    &definition,
                    &mut watch.probe,
                ),
            )
            .await;
        let now = self.now();
        watch.last = Some(now);
        watch.failures = if checked.is_ok() {
            0
        } else {
            watch.failures + 1
        };
        let failures = watch.failures;
        let secondary = plan::describe_target(
            journal.target_kind,
            &journal.strategy,
            name,
            journal.written_storage(name),
        );
        self.secondary_checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone(), watch);
        let problem = match checked {
            Ok(()) => return Ok(done(Some(interval), "secondary healthy".into())),
            Err(problem) => problem,
        };
        let needed = self
            .config
            .responder
            .failover
            .buffer_after_secondary_failures;
        if failures < needed {
            self.notice(
                &object,
                EventType::Warning,
                "SecondaryUnhealthy",
                "Failover",
                format!(
                    "{secondary} failed {failures} check(s) in a row; backups move to the \
                     buffer after {needed}: {problem}"
                ),
            )
            .await;
            return Ok(done(
                Some(interval),
                format!("secondary unhealthy ({failures} of {needed}): {problem}"),
            ));
        }
        let (moved, plan) = match plan::plan_move_to_buffer(&backup, &journal, &managed.failover) {
            Ok(planned) => planned,
            Err(e) => {
                self.metrics.run(PLAYBOOK, "refused");
                tracing::warn!(cluster = %key, %problem, "the secondary keeps failing its checks");
                // Neither the count nor the problem (request ids) in the text: the notice is
                // said once while it lasts; SecondaryUnhealthy Events and the log say why.
                self.notice(
                    &object,
                    EventType::Warning,
                    "MoveToBufferRefused",
                    "Failover",
                    format!("{secondary} keeps failing its checks, but backups stay on it: {e}"),
                )
                .await;
                return Ok(done(
                    Some(interval),
                    format!("cannot move to the buffer: {e}"),
                ));
            }
        };
        let reason = format!("{secondary} failed {failures} checks in a row: {problem}");
        let next = Journal {
            version: MOVED_JOURNAL_VERSION,
            strategy: plan.strategy.to_owned(),
            target_kind: plan.target_kind,
            target_storage: plan.target_storage.clone(),
            protected: plan.protected.clone(),
            changes: plan.changes.clone(),
            cover_backup: None,
            moved_to_buffer_at: Some(now),
            message: Some(reason.clone()),
            ..journal
        };
        let summary = format!(
            "backups of {} moved to {}: {reason}; run {}",
            plan.protected.join(", "),
            plan.target(),
            next.run_id
        );
        if self.dry_run() {
            self.remember_dry_journal(key, next);
            self.metrics.run(PLAYBOOK, "dry_run");
            self.event(
                &object,
                EventType::Warning,
                "MovedToBuffer",
                "Failover",
                format!("would move: {summary}"),
            )
            .await;
            return Ok(done(
                Some(Duration::ZERO),
                format!("dry run: would move: {summary}"),
            ));
        }
        let Some(written) = self
            .write_failed_over(PLAYBOOK, key, object, moved, &next)
            .await?
        else {
            return Ok(Written::Conflict);
        };
        self.event(
            &written,
            EventType::Warning,
            "MovedToBuffer",
            "Failover",
            summary.clone(),
        )
        .await;
        // The cover backup on the buffer follows in the next step.
        Ok(done(Some(Duration::ZERO), summary))
    }
}

/// A finished step that leaves the cluster failed over.
fn done(requeue: Option<Duration>, note: String) -> Written {
    Written::Done(Outcome {
        phase: Some(Phase::FailedOver),
        requeue,
        note,
    })
}
