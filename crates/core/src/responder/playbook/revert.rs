//! Revert: once the alerts resolved, the cool-down passed and the primary passed
//! `hold_down_probes` consecutive fresh checks (one per probe interval), restore every field
//! the journal saved, in one write with the journal; a field someone changed since the
//! failover is kept, and said so. The test backup follows ([`super::verify`]).

use std::time::Duration;

use kube::api::DynamicObject;
use serde_json::Value;

use crate::k8s::events::EventType;

use super::super::cluster::backup_spec;
use super::super::effect::{Effect, Note, Plan, Playbook, RunResult, Stage, run_backup_name};
use super::super::engine::Engine;
use super::super::journal::{Field, Journal, Phase};
use super::super::plan;
use super::Context;

const PLAYBOOK: Playbook = Playbook::Revert;

/// Where the checks of the primary stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checks {
    /// The per-cluster cool-down has this long left; nothing was checked.
    CoolingDown(Duration),
    /// The next check of the primary is due in this long; nothing was checked.
    NotDue(Duration),
    /// The primary was checked now.
    Checked {
        /// What failed (empty: every protected storage passed).
        problems: Vec<String>,
        /// Passing checks in a row, this one included.
        passes: u32,
    },
}

/// What a revert is planned from.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The cluster's `spec.backup`.
    pub backup: Value,
    /// The run to revert.
    pub journal: Journal,
    /// The checks of the primary.
    pub checks: Checks,
}

/// Checks the primary (every protected storage, as the journal saved it), when due, and
/// counts the passes in the replica's memory.
pub async fn observe(
    engine: &Engine,
    ctx: &Context<'_>,
    object: &DynamicObject,
    journal: Journal,
) -> Observed {
    let backup = backup_spec(object);
    let memory = engine.applier().memory();
    let checks = if let Some(left) = ctx.cooldown_left(Some(&journal)) {
        Checks::CoolingDown(left)
    } else if let Some(wait) = memory
        .hold_down(ctx.key)
        .and_then(|h| ctx.next_check_in(h.last))
    {
        // A reconcile sooner than a probe interval after the last check (a repeated
        // notification, a watch event) neither checks nor counts.
        Checks::NotDue(wait)
    } else {
        let mut problems = Vec::new();
        for name in &journal.protected {
            let definition = journal
                .original_storage(name)
                .cloned()
                .or_else(|| plan::get(&backup, &Field::Storage(name.clone())))
                .unwrap_or(Value::Null);
            if let Err(problem) = engine
                .verify(PLAYBOOK, Stage::VerifyPrimary, ctx.key, name, &definition)
                .await
            {
                problems.push(problem);
            }
        }
        let passes = memory.count_hold_down(ctx.key, problems.is_empty(), ctx.now);
        Checks::Checked { problems, passes }
    };
    Observed {
        backup,
        journal,
        checks,
    }
}

/// Plans the revert: a wait, or the restore.
pub fn plan(ctx: &Context<'_>, observed: Observed) -> Plan {
    let Observed {
        backup,
        mut journal,
        checks,
    } = observed;
    let phase = Some(journal.phase);
    let interval = Some(ctx.probe_interval());
    match checks {
        Checks::CoolingDown(left) => {
            return Plan::report(phase, Some(left), "waiting for the cool-down").with([
                Effect::Notice(Note::new(
                    EventType::Normal,
                    "RevertWaiting",
                    "Revert",
                    format!(
                        "alert resolved; the per-cluster cool-down has {}s left",
                        left.as_secs()
                    ),
                )),
            ]);
        }
        Checks::NotDue(wait) => {
            return Plan::report(
                phase,
                Some(wait),
                "hold-down: next check of the primary not due yet",
            );
        }
        Checks::Checked { problems, .. } if !problems.is_empty() => {
            let problems = problems.join("; ");
            return Plan::report(phase, interval, format!("primary unhealthy: {problems}")).with(
                [Effect::Notice(Note::new(
                    EventType::Warning,
                    "RevertWaiting",
                    "Revert",
                    format!(
                        "alert resolved but the primary still fails its checks; staying on {:?}: {problems}",
                        journal.target_storage
                    ),
                ))],
            );
        }
        Checks::Checked { passes, .. } => {
            let needed = ctx.config.responder.revert.hold_down_probes;
            if passes < needed {
                return Plan::report(
                    phase,
                    interval,
                    format!("primary healthy {passes}/{needed} times in a row"),
                );
            }
        }
    }

    let revert = plan::plan_revert(&backup, &journal);
    let test = ctx.config.responder.revert.test_backup;
    journal.phase = if test {
        Phase::Verifying
    } else {
        Phase::Reverted
    };
    journal.reverted_at = Some(ctx.now);
    journal.kept_edits = revert.kept.clone();
    journal.test_backup = test.then(|| run_backup_name(&ctx.key.name, "verify", &journal.run_id));
    journal.finished_at = (!test).then_some(ctx.now);
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
    let phase = Some(journal.phase);
    let mut restored = backup;
    plan::apply_revert(&mut restored, &revert);
    let mut effects = vec![
        Effect::WriteCluster {
            playbook: PLAYBOOK,
            backup: Some(restored),
            journal,
        },
        Effect::Event(
            Note::new(EventType::Normal, "Reverted", "Revert", summary.clone())
                .when_recorded(format!("would have {summary}")),
        ),
    ];
    if !revert.kept.is_empty() {
        effects.push(Effect::Event(Note::new(
            EventType::Warning,
            "RevertKeptEdits",
            "Revert",
            format!(
                "fields changed by someone else after the failover were kept: {:?}",
                revert.kept
            ),
        )));
    }
    if !test {
        effects.push(Effect::CountRun(PLAYBOOK, RunResult::Succeeded));
    }
    Plan::report(phase, test.then_some(Duration::ZERO), summary.clone())
        .with(effects)
        .when_recorded(format!("would have {summary}"))
}
