//! Verification of a revert: a test backup on the primary, under a name derived from the run;
//! the revert is verified when it succeeds, and marked failed (with an Event, staying on the
//! primary, never failing back over by itself) when it fails or outlasts
//! `responder.revert.test_backup_timeout`.

use std::time::Duration;

use crate::k8s::events::EventType;
use crate::pxc::{PerconaXtraDBClusterBackup, state};

use super::super::effect::{
    Effect, Note, Plan, Playbook, RunBackup, RunResult, STARTED_AT_ANNOTATION, Stage,
};
use super::super::engine::{Engine, EngineError};
use super::super::journal::{Journal, Phase};
use super::Context;

const PLAYBOOK: Playbook = Playbook::Revert;

/// How far ahead of this replica's clock a recorded time may be and still be believed (the
/// clocks of two replicas, or of Backstop and the API server, differ a little).
const CLOCK_SKEW: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);

/// What the verification is planned from.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The run being verified.
    pub journal: Journal,
    /// The test backup's name.
    pub name: String,
    /// The test backup as it stands (`None`: not created yet).
    pub backup: Option<PerconaXtraDBClusterBackup>,
}

/// Reads the test backup the journal names; `None` when the journal names none.
///
/// # Errors
///
/// [`EngineError`] when the read fails.
pub async fn observe(
    engine: &Engine,
    ctx: &Context<'_>,
    journal: Journal,
) -> Result<Result<Observed, Plan>, EngineError> {
    let Some(name) = journal.test_backup.clone() else {
        return Ok(Err(Plan::report(
            Some(journal.phase),
            None,
            "no test backup recorded",
        )));
    };
    let backup = engine
        .applier()
        .read_run_backup(&ctx.key.namespace, &name)
        .await?;
    Ok(Ok(Observed {
        journal,
        name,
        backup,
    }))
}

/// When the test backup started, for its timeout: Backstop's stamp on it, else the API
/// server's creation time (a backup created by a version without the stamp), each only when
/// plausible: not before the revert and not ahead of `now` by more than [`CLOCK_SKEW`]. A
/// time that is neither (a hand edit, a far-off clock) falls back to the revert, so the
/// timeout can always run out.
pub fn test_backup_started(
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

/// Plans the next move: start the test backup, wait for it, or record its verdict.
pub fn plan(ctx: &Context<'_>, observed: Observed) -> Plan {
    let Observed {
        mut journal,
        name,
        backup,
    } = observed;
    let storage = journal.protected.first().cloned().unwrap_or_default();
    let revert = &ctx.config.responder.revert;
    let timeout = revert.test_backup_timeout.get();
    // Counted from the test backup's start; a backup created in this pass has had no time
    // at all.
    let reverted = journal.reverted_at.unwrap_or(journal.failed_over_at);
    let mut elapsed = Duration::ZERO;
    let mut effects = Vec::new();
    let verdict: Option<Result<(), String>> = match backup {
        None => {
            effects.push(Effect::CreateBackup {
                playbook: PLAYBOOK,
                stage: Stage::TestBackup,
                backup: RunBackup {
                    name: name.clone(),
                    storage: storage.clone(),
                    run_id: journal.run_id.clone(),
                    purpose: "verify",
                },
            });
            effects.push(Effect::Event(Note::new(
                EventType::Normal,
                "TestBackupStarted",
                "Revert",
                format!("started test backup {name} on storage {storage:?}"),
            )));
            None
        }
        Some(backup) => {
            let stamp = backup
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(STARTED_AT_ANNOTATION));
            let created = backup.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let started =
                test_backup_started(stamp.map(String::as_str), created, reverted, ctx.now);
            elapsed = Duration::try_from(ctx.now.duration_since(started)).unwrap_or(Duration::ZERO);
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
    };
    let verdict = match verdict {
        Some(v) => v,
        None if elapsed >= timeout => Err(format!(
            "test backup {name} did not finish within {}",
            revert.test_backup_timeout
        )),
        None => {
            // The backup watch wakes the controller on progress; this is the backstop for
            // the timeout.
            let requeue = timeout
                .saturating_sub(elapsed)
                .min(ctx.probe_interval().max(Duration::from_secs(1)));
            return Plan::report(
                Some(Phase::Verifying),
                Some(requeue),
                format!("waiting for test backup {name}"),
            )
            .with(effects);
        }
    };
    journal.finished_at = Some(ctx.now);
    let (reason, type_, message, result) = match &verdict {
        Ok(()) => {
            journal.phase = Phase::Reverted;
            journal.message = None;
            (
                "RevertVerified",
                EventType::Normal,
                format!(
                    "test backup {name} on storage {storage:?} succeeded; the revert is verified"
                ),
                RunResult::Succeeded,
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
                RunResult::VerificationFailed,
            )
        }
    };
    let phase = Some(journal.phase);
    effects.extend([
        Effect::WriteCluster {
            playbook: PLAYBOOK,
            backup: None,
            journal,
        },
        Effect::CountRun(PLAYBOOK, result),
        Effect::Event(Note::new(type_, reason, "Revert", message.clone())),
    ]);
    Plan::report(phase, None, message).with(effects)
}
