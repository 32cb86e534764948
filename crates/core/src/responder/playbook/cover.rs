//! The cover backup: right after a failover (and again after each move between targets), an
//! on-demand backup on the storage backups now go to, so the backups missed during the
//! outage are covered without waiting for the next schedule.

use crate::k8s::events::EventType;

use super::super::effect::{Effect, Note, Plan, Playbook, RunBackup, Stage, run_backup_name};
use super::super::journal::{Journal, Phase, TargetKind};
use super::Context;

/// Plans the cover backup of the run `journal` records (nothing needs observing: the backup's
/// name is the run's, so a repeat finds it created).
pub fn plan(ctx: &Context<'_>, journal: Option<Journal>) -> Plan {
    let Some(mut journal) = journal else {
        return super::no_journal();
    };
    // A run that moved covers again on its new target, under a name of its own for each
    // move (a run may return to a target it covered before).
    let on_buffer = journal.target_kind == TargetKind::Buffer;
    let purpose = if on_buffer && journal.moved_to_buffer_at.is_some() {
        "cover-buffer"
    } else {
        "cover"
    };
    let name = match (journal.moves, on_buffer) {
        (0, _) | (1, true) => purpose.to_owned(),
        (n, true) => format!("cover-buffer-{n}"),
        (n, false) => format!("cover-move-{n}"),
    };
    let name = run_backup_name(&ctx.key.name, &name, &journal.run_id);
    journal.cover_backup = Some(name.clone());
    let storage = journal.target_storage.clone();
    let backup = RunBackup {
        name: name.clone(),
        storage: storage.clone(),
        run_id: journal.run_id.clone(),
        purpose,
    };
    Plan::report(
        Some(Phase::FailedOver),
        None,
        format!("started cover backup {name}"),
    )
    .with([
        Effect::CreateBackup {
            playbook: Playbook::Failover,
            stage: Stage::CoverBackup,
            backup,
        },
        Effect::WriteCluster {
            playbook: Playbook::Failover,
            backup: None,
            journal,
        },
        Effect::Event(
            Note::new(
                EventType::Normal,
                "CoverBackup",
                "Failover",
                format!(
                    "started on-demand backup {name} on storage {storage:?} to cover the backups missed during the outage"
                ),
            )
            .when_recorded(format!(
                "would start backup {name} on storage that backups failed over to"
            )),
        ),
    ])
    .when_recorded(format!("would start cover backup {name}"))
}
