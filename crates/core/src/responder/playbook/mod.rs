//! The playbooks, side by side: each turns what was observed about one cluster into a
//! [`Plan`](super::effect::Plan) of effects, without I/O and without knowing whether the plan
//! will be carried out or only recorded (a dry run; see [`applier`](super::applier)).
//!
//! [`decide`] picks the step from the intent and the journal. Each step's module has an
//! `observe` function, which makes the reads the step needs (the cluster, fresh checks of a
//! storage, a backup's state) and nothing else, and a pure `plan` function, unit-tested
//! here without a server:
//!
//! - [`failover`]: switch backups to the first secondary in order verified healthy just
//!   now, else to the buffer, within the rate limits;
//! - [`cancel`]: delete backups hung on the failed storage, so the operator's lock frees;
//! - [`cover`]: the on-demand backup that covers what was missed before the failover;
//! - [`retarget`]: leave a target that keeps failing its checks, return to a better one
//!   that has recovered;
//! - [`revert`]: after the hold-down, restore exactly what the journal saved;
//! - [`verify`]: the test backup that proves the revert.

pub mod cancel;
pub mod cover;
pub mod failover;
pub mod retarget;
pub mod revert;
pub mod verify;

use std::time::Duration;

use crate::config::{Config, ManagedCluster};

use super::cluster::ClusterKey;
use super::effect::Plan;
use super::journal::{Journal, Phase};

/// The next step for a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do.
    Idle,
    /// Switch backups to the secondary or the buffer.
    Failover,
    /// Start the on-demand backup that covers the backups missed before the failover.
    Cover,
    /// Restore the saved settings (after the hold-down).
    Revert,
    /// Watch the test backup on the primary.
    Verify,
    /// Check the targets of a failed-over cluster: leave one that keeps failing, return to a
    /// better one that has recovered.
    WatchTargets,
}

/// Decides the next step from whether the alerts want a failover and where the journal says
/// the cluster is; `watch_targets` is whether the run has targets to watch
/// ([`retarget::watches`]). Pure, so every combination is tested.
pub fn decide(
    wants_failover: bool,
    journal: Option<&Journal>,
    cover_wanted: bool,
    watch_targets: bool,
) -> Step {
    let phase = journal.map(|j| j.phase);
    match (wants_failover, phase) {
        (true, None | Some(Phase::Reverted | Phase::VerificationFailed | Phase::Verifying)) => {
            Step::Failover
        }
        (true, Some(Phase::FailedOver)) => {
            if cover_wanted && journal.is_some_and(|j| j.cover_backup.is_none()) {
                Step::Cover
            } else if watch_targets {
                Step::WatchTargets
            } else {
                Step::Idle
            }
        }
        (false, Some(Phase::FailedOver)) => Step::Revert,
        (false, Some(Phase::Verifying)) => Step::Verify,
        (false, None | Some(Phase::Reverted | Phase::VerificationFailed)) => Step::Idle,
    }
}

/// What every playbook reads besides its own observations: the cluster, its policy, the
/// configuration and the time.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The cluster.
    pub key: &'a ClusterKey,
    /// Its policy.
    pub managed: &'a ManagedCluster,
    /// The configuration.
    pub config: &'a Config,
    /// Now, by the engine's clock.
    pub now: jiff::Timestamp,
}

impl Context<'_> {
    /// How often storages are checked.
    pub fn probe_interval(&self) -> Duration {
        self.config.probe.interval.get()
    }

    /// How long until a check one probe interval after `last` is due (`None`: now). Checks
    /// are one probe interval apart however often the cluster is reconciled (every
    /// notification, watch event and requeue triggers a reconcile).
    pub fn next_check_in(&self, last: jiff::Timestamp) -> Option<Duration> {
        let since = Duration::try_from(self.now.duration_since(last)).unwrap_or(Duration::ZERO);
        self.probe_interval()
            .checked_sub(since)
            .filter(|d| !d.is_zero())
    }

    /// How long until the per-cluster cool-down allows another playbook run.
    pub fn cooldown_left(&self, journal: Option<&Journal>) -> Option<Duration> {
        let journal = journal?;
        let last = journal
            .reverted_at
            .unwrap_or(journal.failed_over_at)
            .max(journal.failed_over_at);
        let cooldown = self.config.responder.rate_limits.per_cluster_cooldown.get();
        let since = Duration::try_from(self.now.duration_since(last)).unwrap_or(Duration::ZERO);
        cooldown.checked_sub(since).filter(|d| !d.is_zero())
    }
}

/// A step with nothing to go on: the journal it needs is gone (someone removed it between
/// the decision and the step).
fn no_journal() -> Plan {
    Plan::report(None, None, "no journal")
}

#[cfg(test)]
mod tests;
