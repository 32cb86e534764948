//! The journal: what a playbook did to a cluster, kept on the cluster as an annotation and
//! written in the same request as the change it describes. It holds every field's value
//! before and after the change, so a revert restores the original exactly even after a
//! crash, and can tell a field Backstop wrote from one a human changed since.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The annotation holding the journal, as JSON.
pub const JOURNAL_ANNOTATION: &str = "backstop.percona.com/journal";

/// The format version of a journal written by a failover.
pub const JOURNAL_VERSION: u32 = 1;

/// The format version of a journal whose run moved to the buffer, and the newest version
/// this Backstop reads. A run that moved must not be continued by a Backstop that does not
/// know `movedToBufferAt` (during a rolling upgrade): it would drop the field and cover the
/// buffer under the secondary's cover backup name, so it refuses the journal instead.
pub const MOVED_JOURNAL_VERSION: u32 = 2;

/// The format version of a journal whose run moved between secondaries, or went to a
/// secondary other than the first, and the newest version this Backstop reads. A Backstop
/// that knows only one secondary must not continue such a run: it would check and cover
/// the wrong target, so it refuses the journal instead.
pub const ORDERED_JOURNAL_VERSION: u32 = 3;

/// Where a cluster is in the failover/revert cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Backups go to the secondary or the buffer.
    FailedOver,
    /// The original settings are back; the test backup on the primary is running.
    Verifying,
    /// The original settings are back and the test backup succeeded (or was not asked for).
    Reverted,
    /// The original settings are back but the test backup failed or timed out. Backstop does
    /// not flap back to the secondary; a human looks.
    VerificationFailed,
}

impl Phase {
    /// Whether the cluster currently runs on the failover target.
    pub fn is_failed_over(self) -> bool {
        self == Self::FailedOver
    }

    /// The phase's name, as in the annotation.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FailedOver => "FailedOver",
            Self::Verifying => "Verifying",
            Self::Reverted => "Reverted",
            Self::VerificationFailed => "VerificationFailed",
        }
    }
}

/// What the cluster failed over to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// The secondary bucket/region.
    Secondary,
    /// The filesystem (PVC) buffer.
    Buffer,
}

impl TargetKind {
    /// `secondary` or `buffer`, for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secondary => "secondary",
            Self::Buffer => "buffer",
        }
    }
}

/// A field of `spec.backup` a playbook may change.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Field {
    /// `storageName` of the schedule entry with this name (schedules are keyed by name, not
    /// position, so a human reordering the list does not confuse the revert).
    ScheduleStorage(String),
    /// The whole `pitr` object.
    Pitr,
    /// The whole storage entry with this name.
    Storage(String),
}

/// One field's value before and after a change; `None` means the field was absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The field.
    pub field: Field,
    /// Its value before Backstop changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// The value Backstop wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// The journal of one cluster's latest playbook run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Journal {
    /// Format version ([`JOURNAL_VERSION`]).
    pub version: u32,
    /// Identifies the failover and everything that follows from it (Events, backups).
    pub run_id: String,
    /// Where the cluster is.
    pub phase: Phase,
    /// `repoint`, `in-place` or `buffer`.
    pub strategy: String,
    /// What the backups went to.
    pub target_kind: TargetKind,
    /// The storage entry backups went to.
    pub target_storage: String,
    /// The `storage_name` of the policy's secondary backups went to (absent for the buffer,
    /// and in journals from before ordered secondaries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_secondary: Option<String>,
    /// The storages that failed (the ones protected by the policy), by name.
    pub protected: Vec<String>,
    /// Every field changed, with its original value.
    pub changes: Vec<Change>,
    /// When the failover was written.
    pub failed_over_at: jiff::Timestamp,
    /// The on-demand backup started after the failover (after the move to the buffer, when
    /// there was one), once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cover_backup: Option<String>,
    /// Backups to the failed storage that hung and were deleted to free the operator's lock
    /// (recorded before the deletes, so a crash between them converges).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cancelled_backups: Vec<String>,
    /// How far the failure reached when the cluster failed over, as the prober judged it
    /// (`probe::blast`), for `backstop status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blast_radius: Option<String>,
    /// When the run moved from its failing secondary to the buffer. `changes` then hold the
    /// buffer's changes against the original settings, so the revert is as exact as ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_to_buffer_at: Option<jiff::Timestamp>,
    /// Moves between targets since the failover (down off a failing one, up to a recovered
    /// one); each gets a cover backup of its own.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub moves: u32,
    /// When the latest move was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_at: Option<jiff::Timestamp>,
    /// When the revert was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverted_at: Option<jiff::Timestamp>,
    /// The test backup proving the revert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_backup: Option<String>,
    /// When the test backup succeeded or the verification gave up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<jiff::Timestamp>,
    /// Fields the revert left alone because someone changed them after the failover.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept_edits: Vec<Field>,
    /// The latest notable problem, for `backstop status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Why a journal annotation could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Not JSON of the expected shape.
    #[error("journal annotation is not valid: {0}")]
    Invalid(#[from] serde_json::Error),
    /// Written by a newer Backstop.
    #[error("journal annotation has version {0}, newer than this Backstop understands")]
    Version(u32),
}

impl Journal {
    /// Reads the annotation value.
    ///
    /// # Errors
    ///
    /// [`JournalError`] when it is not a journal this version understands.
    pub fn parse(text: &str) -> Result<Self, JournalError> {
        let journal: Self = serde_json::from_str(text)?;
        if journal.version > ORDERED_JOURNAL_VERSION {
            return Err(JournalError::Version(journal.version));
        }
        Ok(journal)
    }

    /// The annotation value.
    pub fn render(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The original definition of a protected storage: its saved value when the failover
    /// rewrote it (in-place), else `None` (it was not changed, so the spec still has it).
    pub fn original_storage(&self, name: &str) -> Option<&Value> {
        self.storage_change(name).and_then(|c| c.before.as_ref())
    }

    /// The definition the failover wrote for the storage entry `name`, if it wrote one.
    pub fn written_storage(&self, name: &str) -> Option<&Value> {
        self.storage_change(name).and_then(|c| c.after.as_ref())
    }

    fn storage_change(&self, name: &str) -> Option<&Change> {
        self.changes
            .iter()
            .find(|c| c.field == Field::Storage(name.to_owned()))
    }
}

/// A journal for unit tests: `phase`, with `changes`, target `b`, protecting `a`.
#[cfg(test)]
pub(crate) fn test_journal(phase: Phase, changes: Vec<Change>) -> Journal {
    Journal {
        version: JOURNAL_VERSION,
        run_id: "r".into(),
        phase,
        strategy: "repoint".into(),
        target_kind: TargetKind::Secondary,
        target_storage: "b".into(),
        target_secondary: None,
        protected: vec!["a".into()],
        changes,
        failed_over_at: jiff::Timestamp::UNIX_EPOCH,
        cover_backup: None,
        cancelled_backups: Vec::new(),
        blast_radius: None,
        moved_to_buffer_at: None,
        moves: 0,
        moved_at: None,
        reverted_at: None,
        test_backup: None,
        finished_at: None,
        kept_edits: vec![],
        message: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_newer_versions() {
        let journal = test_journal(
            Phase::FailedOver,
            vec![
                Change {
                    field: Field::ScheduleStorage("daily".into()),
                    before: Some("a".into()),
                    after: Some("b".into()),
                },
                Change {
                    field: Field::Storage("b".into()),
                    before: None,
                    after: Some(serde_json::json!({"type": "s3"})),
                },
            ],
        );
        let text = journal.render();
        assert!(
            text.contains(r#""field":{"scheduleStorage":"daily"}"#),
            "{text}"
        );
        assert_eq!(Journal::parse(&text).unwrap(), journal);
        let moved = text.replace(r#""version":1"#, r#""version":2"#);
        assert_eq!(
            Journal::parse(&moved).unwrap().version,
            MOVED_JOURNAL_VERSION
        );
        let ordered = text.replace(r#""version":1"#, r#""version":3"#);
        assert_eq!(
            Journal::parse(&ordered).unwrap().version,
            ORDERED_JOURNAL_VERSION
        );
        let newer = text.replace(r#""version":1"#, r#""version":4"#);
        assert!(matches!(
            Journal::parse(&newer),
            Err(JournalError::Version(4))
        ));
    }
}
