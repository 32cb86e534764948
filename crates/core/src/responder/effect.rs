//! What a playbook asks for: a [`Plan`] of [`Effect`]s and the [`Outcome`] to report once
//! they are carried out. Playbooks build plans; the [`applier`](super::applier) carries them
//! out live or records them in a dry run. Labels are enums, so the metrics' label sets are
//! bounded by construction.

use std::time::Duration;

use serde_json::Value;

use crate::k8s::events::EventType;

use super::journal::{Journal, Phase};

/// Label on the backups the playbooks create, holding the run id.
pub const RUN_LABEL: &str = "backstop.percona.com/run";

/// Annotation on the backups Backstop creates: when it created them, by its own clock. The
/// test backup's timeout counts from here, so time Backstop spent down between the revert
/// and starting the backup is not held against the backup.
pub const STARTED_AT_ANNOTATION: &str = "backstop.percona.com/started-at";

/// A playbook, as the metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Playbook {
    /// Switch backups to the secondary or the buffer (with its cover backup).
    Failover,
    /// Move backups from a failing secondary to the buffer.
    MoveToBuffer,
    /// Move backups between secondaries, or from the buffer back up to a secondary.
    Move,
    /// Restore the saved settings and prove them with a test backup.
    Revert,
}

impl Playbook {
    /// The `playbook` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failover => "failover",
            Self::MoveToBuffer => "move_to_buffer",
            Self::Move => "move",
            Self::Revert => "revert",
        }
    }
}

/// How a playbook run ended, as `backstop_playbook_runs_total` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunResult {
    /// The change was written (a dry run counts [`RunResult::DryRun`] instead).
    Succeeded,
    /// A dry run recorded the change instead of writing it.
    DryRun,
    /// A rate limit held the run back.
    RateLimited,
    /// No target passed its checks; nothing changed.
    NoViableTarget,
    /// The run could not be carried out safely; nothing changed.
    Refused,
    /// The revert's test backup failed or timed out.
    VerificationFailed,
}

impl RunResult {
    /// The `result` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::DryRun => "dry_run",
            Self::RateLimited => "rate_limited",
            Self::NoViableTarget => "no_viable_target",
            Self::Refused => "refused",
            Self::VerificationFailed => "verification_failed",
        }
    }
}

/// A timed stage of a playbook, as `backstop_playbook_step_seconds` labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Writing the cluster.
    Write,
    /// The fresh check of the secondary.
    VerifySecondary,
    /// The fresh check of the primary before a revert.
    VerifyPrimary,
    /// Creating the cover backup.
    CoverBackup,
    /// Creating the test backup.
    TestBackup,
}

impl Stage {
    /// The `step` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Write => "write",
            Self::VerifySecondary => "verify_secondary",
            Self::VerifyPrimary => "verify_primary",
            Self::CoverBackup => "cover_backup",
            Self::TestBackup => "test_backup",
        }
    }
}

/// An Event to emit about the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Normal or Warning.
    pub type_: EventType,
    /// The Event's reason (`FailedOver`, ...).
    pub reason: &'static str,
    /// The Event's action (`Failover`, `Revert`, `Reconcile`).
    pub action: &'static str,
    /// The message when the plan is carried out.
    pub message: String,
    /// The message when the plan is only recorded (a dry run), where it differs.
    pub recorded_message: Option<String>,
}

impl Note {
    /// A note with one message for both modes.
    pub fn new(
        type_: EventType,
        reason: &'static str,
        action: &'static str,
        message: String,
    ) -> Self {
        Self {
            type_,
            reason,
            action,
            message,
            recorded_message: None,
        }
    }

    /// The same note, saying `message` in a dry run.
    #[must_use]
    pub fn when_recorded(mut self, message: String) -> Self {
        self.recorded_message = Some(message);
        self
    }
}

/// A backup a run creates: its name is derived from the run id, so creating it twice finds
/// it already there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunBackup {
    /// The backup's name ([`run_backup_name`]).
    pub name: String,
    /// The storage it writes to.
    pub storage: String,
    /// The run that owns it.
    pub run_id: String,
    /// `cover`, `cover-buffer` or `verify` (the `backstop.percona.com/purpose` label).
    pub purpose: &'static str,
}

/// One thing a plan does, in order. A cluster write that meets a newer resourceVersion stops
/// the plan there; the engine re-reads and plans again.
#[derive(Debug, Clone, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "a plan holds a handful of effects, built once per step; boxing buys nothing"
)]
pub enum Effect {
    /// Write the cluster in one replace under the resourceVersion it was read at: `backup`
    /// as its `spec.backup` (when `Some`) and `journal`, so the change and the record of it
    /// land together or not at all.
    WriteCluster {
        /// The playbook writing (for the step timing).
        playbook: Playbook,
        /// The new `spec.backup`, or `None` to leave it.
        backup: Option<Value>,
        /// The journal to record.
        journal: Journal,
    },
    /// Create a backup the run owns (nothing when it exists).
    CreateBackup {
        /// The playbook and stage, for the step timing.
        playbook: Playbook,
        /// Which backup.
        stage: Stage,
        /// The backup.
        backup: RunBackup,
    },
    /// Emit an Event.
    Event(Note),
    /// Emit an Event unless it repeats the last one said about this cluster: for refusals and
    /// waits, which last.
    Notice(Note),
    /// Count a playbook run's result.
    CountRun(Playbook, RunResult),
    /// Delete a backup (a hung one, to free the operator's lock); one already gone is fine.
    DeleteBackup {
        /// Its name, in the cluster's namespace.
        name: String,
    },
    /// Count a hung backup's cancellation (`backstop_backups_cancelled_total`).
    CountCancel(CancelResult),
}

/// What became of a hung backup, as `backstop_backups_cancelled_total` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelResult {
    /// Deleted (a dry run counts [`CancelResult::DryRun`] instead).
    Cancelled,
    /// A dry run recorded the deletion instead.
    DryRun,
    /// Left running: its storage passed a fresh check.
    Refused,
}

impl CancelResult {
    /// The `result` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cancelled => "cancelled",
            Self::DryRun => "dry_run",
            Self::Refused => "refused",
        }
    }
}

/// What a playbook decided: the effects, in order, and what to report after them.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The effects.
    pub effects: Vec<Effect>,
    /// The report once every effect is carried out.
    pub outcome: Outcome,
    /// The report's note in a dry run, where it differs.
    pub recorded_note: Option<String>,
}

impl Plan {
    /// A plan that only reports.
    pub fn report(
        phase: Option<Phase>,
        requeue: Option<Duration>,
        note: impl Into<String>,
    ) -> Self {
        Self {
            effects: Vec::new(),
            outcome: Outcome {
                phase,
                requeue,
                note: note.into(),
            },
            recorded_note: None,
        }
    }

    /// The same plan with `effects` first.
    #[must_use]
    pub fn with(mut self, effects: impl IntoIterator<Item = Effect>) -> Self {
        self.effects.extend(effects);
        self
    }

    /// The same plan, reporting `note` in a dry run.
    #[must_use]
    pub fn when_recorded(mut self, note: String) -> Self {
        self.recorded_note = Some(note);
        self
    }

    /// Whether the plan writes the cluster.
    pub fn writes(&self) -> bool {
        self.effects
            .iter()
            .any(|e| matches!(e, Effect::WriteCluster { .. }))
    }
}

/// What the engine did, and when to look again: the one report of every step.
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
