//! Moving between targets while failed over. The policy orders its targets: the secondaries
//! in order, the buffer last. While a cluster is failed over and the alert still fires, once
//! per probe interval:
//!
//! - **down**: the secondary backups go to is checked (the same fresh HeadBucket and canary
//!   as the failover's preflight). After `responder.failover.buffer_after_secondary_failures`
//!   failed checks in a row, backups move to the best other target that passes a check made
//!   just now, else to the buffer.
//! - **up**: every secondary ranked above the current target is checked too. One that has
//!   passed every check for `responder.failover.move_up_after` (the hold-down against
//!   flapping), this one included, takes the backups back: the buffer gives way to a
//!   recovered secondary, a lower secondary to a higher one. The primary is not among them:
//!   its return is the alert's resolution and the revert's business.
//!
//! A move keeps the run: same run id, same `failed_over_at` (so rate limits and the
//! cool-down see one failover), and a journal whose changes are the new target's against the
//! *original* settings ([`plan::plan_move`]), written in one conditional replace with the
//! new spec. A crash leaves the cluster on the old target or on the new one, never in
//! between, and the revert restores the original exactly however many moves came before. A
//! field a human changed since the failover stops every move: the originals could no longer
//! be derived exactly, so the cluster stays where it is and an Event says why.
//!
//! The checks keep the prober's state from one to the next (canary schedule, leftover
//! canaries). The failures in a row and the time since a target passes live in the replica's
//! [memory](super::super::memory): a restart or a new leader starts them afresh, which can
//! only delay a move.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::DynamicObject;
use serde_json::Value;

use crate::config::FailoverPolicy;
use crate::k8s::events::EventType;
use crate::probe::cycle::TargetState;

use super::super::cluster::backup_spec;
use super::super::effect::{Effect, Note, Plan, Playbook, RunResult, Stage};
use super::super::engine::Engine;
use super::super::journal::{
    Field, Journal, MOVED_JOURNAL_VERSION, ORDERED_JOURNAL_VERSION, Phase,
};
use super::super::plan::{self, Destination};
use super::Context;

/// One cluster's watch of its targets while failed over.
#[derive(Debug, Default)]
pub struct TargetWatch {
    /// When the last round of checks ran.
    pub last: Option<jiff::Timestamp>,
    /// Each checked secondary's record, by its `storage_name`.
    pub records: BTreeMap<String, TargetRecord>,
}

/// What the checks of one secondary showed so far.
#[derive(Debug, Default)]
pub struct TargetRecord {
    /// Failed checks in a row.
    pub failures: u32,
    /// Since when every check passed (`None`: the last one failed, or none ran).
    pub passing_since: Option<jiff::Timestamp>,
    /// The checks' probe state (canary schedule, leftover canaries).
    pub probe: TargetState,
}

/// Whether a run `journal` records, under `policy`, has targets to watch: the secondary it
/// is on (when leaving a failing one is on), or better targets to return to (when moving up
/// is on). A secondary no longer in the policy is watched only to leave it.
pub fn watches(journal: &Journal, policy: &FailoverPolicy, ctx: &Context<'_>) -> bool {
    let settings = &ctx.config.responder.failover;
    match plan::current_destination(journal, policy) {
        Some(Destination::Secondary(0)) => settings.buffer_after_secondary_failures > 0,
        Some(Destination::Secondary(_)) => {
            settings.buffer_after_secondary_failures > 0 || !settings.move_up_after.get().is_zero()
        }
        Some(Destination::Buffer) => {
            !settings.move_up_after.get().is_zero() && policy.ordered_secondaries().next().is_some()
        }
        // A secondary no longer in the policy: watched, so it is left when it fails.
        None => settings.buffer_after_secondary_failures > 0,
    }
}

/// One check made this round.
#[derive(Debug, Clone)]
pub struct Check {
    /// What the check found.
    pub result: Result<(), String>,
    /// Failed checks in a row, this one included.
    pub failures: u32,
    /// Since when every check passed, this one included.
    pub passing_since: Option<jiff::Timestamp>,
}

/// What a round of checks is planned from.
#[derive(Debug, Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "one per step, moved straight into the plan"
)]
pub enum Observed {
    /// The next round is due in this long; nothing was checked.
    NotDue(Duration),
    /// The targets were checked now.
    Checked {
        /// The cluster's `spec.backup`.
        backup: Value,
        /// The run.
        journal: Journal,
        /// Where backups go now (`None`: a secondary no longer in the policy).
        current: Option<Destination>,
        /// The check of the current target (`None` on the buffer, which has nothing to
        /// check).
        current_check: Option<Check>,
        /// The checks of other targets, best first.
        others: Vec<(Destination, Check)>,
        /// Fields someone changed since the failover, which stop every move (`None`: none).
        edited: Option<String>,
    },
}

/// Checks the targets of `journal`'s run, when due: the current secondary, the better
/// secondaries, and, when the current one has failed often enough to be left, the worse
/// ones in order until one passes.
pub async fn observe(
    engine: &Engine,
    ctx: &Context<'_>,
    object: &DynamicObject,
    journal: Journal,
) -> Observed {
    let memory = engine.applier().memory();
    if let Some(wait) = memory
        .targets_checked(ctx.key)
        .and_then(|last| ctx.next_check_in(last))
    {
        return Observed::NotDue(wait);
    }
    let mut watch = memory.take_targets(ctx.key);
    let policy = &ctx.managed.failover;
    let backup = backup_spec(object);
    let current = plan::current_destination(&journal, policy);
    let settings = &ctx.config.responder.failover;
    // Records from before a gap (a pause, a cover backup, a resolved alert: any round that
    // was not one interval after the last) are not consecutive with this round's checks: a
    // target that passed before the gap must pass the whole hold-down again.
    let consecutive = watch.last.is_some_and(|last| {
        Duration::try_from(ctx.now.duration_since(last))
            .is_ok_and(|gap| gap <= ctx.probe_interval() * 2)
    });
    let mut records = if consecutive {
        std::mem::take(&mut watch.records)
    } else {
        BTreeMap::new()
    };
    let mut checked = BTreeMap::new();
    let mut check = async |name: String, definition: Value| {
        let mut record: TargetRecord = records.remove(&name).unwrap_or_default();
        let result = engine
            .check(
                Playbook::Move,
                Stage::VerifySecondary,
                ctx.key,
                &name,
                &definition,
                &mut record.probe,
            )
            .await;
        if result.is_ok() {
            record.failures = 0;
            record.passing_since.get_or_insert(ctx.now);
        } else {
            record.failures += 1;
            record.passing_since = None;
        }
        let result_of = Check {
            result,
            failures: record.failures,
            passing_since: record.passing_since,
        };
        checked.insert(name, record);
        result_of
    };

    let current_check = if current == Some(Destination::Buffer) {
        None
    } else {
        // The entry on the cluster is what the backup Job uses; the entry the failover
        // wrote stands in where the cluster has none of that name.
        let storage = &journal.target_storage;
        let definition = plan::get(&backup, &Field::Storage(storage.clone()))
            .or_else(|| journal.written_storage(storage).cloned())
            .unwrap_or(Value::Null);
        let name = journal
            .target_secondary
            .clone()
            .unwrap_or_else(|| storage.clone());
        Some(check(name, definition).await)
    };
    let leaving = current_check.as_ref().is_some_and(|c| {
        c.result.is_err() && c.failures >= settings.buffer_after_secondary_failures
    }) && settings.buffer_after_secondary_failures > 0;
    let moving_up = !settings.move_up_after.get().is_zero();
    // A field edited since the failover stops every move (the originals could no longer be
    // derived exactly): nothing else is worth checking then.
    let kept = plan::plan_revert(&backup, &journal).kept;
    let edited = (!kept.is_empty()).then(|| {
        let fields: Vec<String> = kept.iter().map(|f| format!("{f:?}")).collect();
        fields.join(", ")
    });
    let mut others = Vec::new();
    for (rank, secondary) in policy.ordered_secondaries().enumerate() {
        let to = Destination::Secondary(rank);
        // A secondary no longer in the policy has no rank: nothing is better than it, and
        // the others are looked at only to leave it.
        let better = current.is_some_and(|c| to < c);
        if edited.is_some() || Some(to) == current || !(leaving || (moving_up && better)) {
            continue;
        }
        // Checked as the move would write it: in place, the primary's entry rewritten.
        let Ok((_, target)) = plan::plan_move(&backup, &journal, policy, to) else {
            continue;
        };
        let definition = target.verify.unwrap_or(Value::Null);
        let done = check(secondary.storage_name.clone(), definition).await;
        // Leaving, the first worse target that passes is enough.
        let stop = leaving && !better && done.result.is_ok();
        others.push((to, done));
        if stop {
            break;
        }
    }
    memory.put_targets(
        ctx.key,
        TargetWatch {
            last: Some(ctx.now),
            records: checked,
        },
    );
    Observed::Checked {
        backup,
        journal,
        current,
        current_check,
        others,
        edited,
    }
}

/// Plans the round: stay, warn, refuse, or move up or down.
pub fn plan(ctx: &Context<'_>, observed: Observed) -> Plan {
    let interval = Some(ctx.probe_interval());
    let (backup, journal, current, current_check, others, edited) = match observed {
        Observed::NotDue(wait) => {
            return stays(Some(wait), "next check of the targets not due yet".into());
        }
        Observed::Checked {
            backup,
            journal,
            current,
            current_check,
            others,
            edited,
        } => (backup, journal, current, current_check, others, edited),
    };
    let settings = &ctx.config.responder.failover;
    let policy = &ctx.managed.failover;
    let here = describe_current(&journal);

    // Up: the best better target that has passed for the whole hold-down and just now.
    let hold = jiff::SignedDuration::try_from(settings.move_up_after.get())
        .unwrap_or(jiff::SignedDuration::MAX);
    let recovered = others.iter().find(|(to, c)| {
        !settings.move_up_after.get().is_zero()
            && current.is_some_and(|now| *to < now)
            && c.result.is_ok()
            && c.passing_since
                .and_then(|since| since.checked_add(hold).ok())
                .is_some_and(|due| due <= ctx.now)
    });
    if let Some((to, _)) = recovered {
        let reason = format!(
            "it has passed every check for {} (responder.failover.move_up_after)",
            settings.move_up_after
        );
        return moves(ctx, &backup, journal, *to, Direction::Up, reason, &here);
    }

    let needed = settings.buffer_after_secondary_failures;
    if let Some(fields) = edited {
        let leaving = current_check
            .as_ref()
            .is_some_and(|c| c.result.is_err() && needed > 0 && c.failures >= needed);
        let why = format!("fields the failover wrote were changed since: {fields}");
        let plan = refused(
            interval,
            Playbook::Move,
            "MoveRefused",
            format!("cannot move: {why}"),
            format!("backups stay on {here}, and will not move to another target: {why}"),
        );
        // Counted when a move is due (the target keeps failing); said once either way.
        return if leaving {
            plan
        } else {
            Plan {
                effects: plan
                    .effects
                    .into_iter()
                    .filter(|e| !matches!(e, Effect::CountRun(..)))
                    .collect(),
                ..plan
            }
        };
    }
    let Some(failing) = current_check.filter(|c| c.result.is_err()) else {
        let note = if current == Some(Destination::Buffer) {
            "on the buffer; no better target has recovered for long enough"
        } else {
            "secondary healthy"
        };
        return stays(interval, note.into());
    };
    let problem = failing.result.err().unwrap_or_default();
    let failures = failing.failures;
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
                "{here} failed {failures} check(s) in a row; backups move to the next \
                 target after {needed}: {problem}"
            ),
        ))]);
    }
    // Down: the best other target that passed just now, else the buffer.
    let to = others
        .iter()
        .find(|(_, c)| c.result.is_ok())
        .map(|(to, _)| *to)
        .or_else(|| policy.buffer.as_ref().map(|_| Destination::Buffer));
    let reason = format!("{here} failed {failures} checks in a row: {problem}");
    match to {
        Some(to) => moves(ctx, &backup, journal, to, Direction::Down, reason, &here),
        None => {
            tracing::warn!(cluster = %ctx.key, %problem, "the secondary keeps failing its checks");
            let tried: Vec<String> = others
                .iter()
                .filter_map(|(to, c)| {
                    let e = c.result.as_ref().err()?;
                    Some(format!("{}: {e}", describe_destination(*to, policy)))
                })
                .collect();
            let why = if tried.is_empty() {
                "no other target in the policy".to_owned()
            } else {
                format!("no other target passed ({})", tried.join("; "))
            };
            refused(
                interval,
                Playbook::Move,
                "MoveRefused",
                format!("cannot move: {why}"),
                format!("{here} keeps failing its checks, but backups stay on it: {why}"),
            )
        }
    }
}

/// Which way a move goes in the policy's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Off a failing target.
    Down,
    /// To a recovered better target.
    Up,
}

fn moves(
    ctx: &Context<'_>,
    backup: &Value,
    journal: Journal,
    to: Destination,
    direction: Direction,
    reason: String,
    here: &str,
) -> Plan {
    let interval = Some(ctx.probe_interval());
    let (moved, target) = match plan::plan_move(backup, &journal, &ctx.managed.failover, to) {
        Ok(planned) => planned,
        // Neither a count nor request ids in the text: the notice is said once while it
        // lasts; the SecondaryUnhealthy Events and the log say why.
        Err(e) => {
            let refusal = if to == Destination::Buffer {
                "MoveToBufferRefused"
            } else {
                "MoveRefused"
            };
            return refused(
                interval,
                if to == Destination::Buffer {
                    Playbook::MoveToBuffer
                } else {
                    Playbook::Move
                },
                refusal,
                format!("cannot move: {e}"),
                format!("backups stay on {here}: {e}"),
            );
        }
    };
    let playbook = if to == Destination::Buffer {
        Playbook::MoveToBuffer
    } else {
        Playbook::Move
    };
    let (reason_code, verb) = match (direction, to) {
        (Direction::Down, Destination::Buffer) => ("MovedToBuffer", "moved to"),
        (Direction::Down, Destination::Secondary(_)) => ("MovedToSecondary", "moved to"),
        (Direction::Up, _) => ("MovedUp", "moved back up to"),
    };
    // The first move, from the first secondary to the buffer, is what a Backstop of one
    // secondary did (version 2), so it can still revert it during a rolling downgrade.
    let version = if to == Destination::Buffer
        && journal.moves == 0
        && plan::current_destination(&journal, &ctx.managed.failover)
            == Some(Destination::Secondary(0))
    {
        MOVED_JOURNAL_VERSION
    } else {
        ORDERED_JOURNAL_VERSION
    };
    let mut next = Journal {
        version,
        cover_backup: None,
        moved_to_buffer_at: (to == Destination::Buffer).then_some(ctx.now),
        moves: journal.moves + 1,
        moved_at: Some(ctx.now),
        message: Some(reason.clone()),
        ..journal
    };
    target.record_in(&mut next);
    let summary = format!(
        "backups of {} {verb} {}: {reason}; run {}",
        target.protected.join(", "),
        target.target(),
        next.run_id
    );
    let type_ = if direction == Direction::Up {
        EventType::Normal
    } else {
        EventType::Warning
    };
    // The cover backup on the new target follows in the next step.
    stays(Some(Duration::ZERO), summary.clone())
        .with([
            Effect::WriteCluster {
                playbook,
                backup: Some(moved),
                journal: next,
            },
            Effect::CountRun(playbook, RunResult::Succeeded),
            Effect::Event(
                Note::new(type_, reason_code, "Failover", summary.clone())
                    .when_recorded(format!("would move: {summary}")),
            ),
        ])
        .when_recorded(format!("would move: {summary}"))
}

/// The target backups go to now, in words (in place, named by what the entry holds, never
/// by the primary's storage name alone).
fn describe_current(journal: &Journal) -> String {
    let name = &journal.target_storage;
    plan::describe_target(
        journal.target_kind,
        &journal.strategy,
        name,
        journal.written_storage(name),
    )
}

/// A destination in words: the secondary's storage name, or the buffer.
fn describe_destination(to: Destination, policy: &FailoverPolicy) -> String {
    match to {
        Destination::Secondary(rank) => policy.ordered_secondaries().nth(rank).map_or_else(
            || format!("secondary {}", rank + 1),
            |s| format!("secondary {:?}", s.storage_name),
        ),
        Destination::Buffer => "the buffer".to_owned(),
    }
}

fn refused(
    interval: Option<Duration>,
    playbook: Playbook,
    reason: &'static str,
    note: String,
    message: String,
) -> Plan {
    stays(interval, note).with([
        Effect::CountRun(playbook, RunResult::Refused),
        Effect::Notice(Note::new(EventType::Warning, reason, "Failover", message)),
    ])
}

/// A plan that leaves the cluster failed over.
fn stays(requeue: Option<Duration>, note: String) -> Plan {
    Plan::report(Some(Phase::FailedOver), requeue, note)
}

#[cfg(test)]
mod tests;
