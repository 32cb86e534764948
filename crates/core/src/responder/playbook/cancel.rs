//! No backup left hanging on a failed storage. S3 that accepts connections and never answers
//! leaves a backup `Running` indefinitely: the operator applies no deadline to a running
//! backup, and with `allowParallel: false` it holds the cluster's backup lock, so every later
//! backup (the cover backup first) waits behind it; without the lock, hung Jobs pile up.
//!
//! The rule, while a cluster is failed over and the alert still fires: a backup of the
//! cluster that
//! - is `Starting` or `Running` and not being deleted,
//! - writes to a storage the failover protects (one that failed),
//! - was created before the failover (so it writes to the storage as it was), and is not one
//!   of Backstop's own,
//! - has gone on for `responder.failover.cancel_hung_backups_after` (default 2m),
//!
//! is deleted when a fresh check of its storage fails now. The operator's `release-lock`
//! finalizer then frees the lock, and the Job goes with the backup. A backup whose storage
//! passes the check is never touched (a `BackupLeftRunning` notice and a `refused` count say
//! so). The names go into the journal in the same write that precedes the deletes, so a crash
//! between them converges: recorded backups still there are deleted again on the next step.

use std::collections::BTreeSet;
use std::time::Duration;

use kube::api::{Api, DynamicObject, ListParams};
use serde_json::Value;

use crate::k8s::events::EventType;
use crate::pxc::{PerconaXtraDBClusterBackup, state};

use super::super::cluster::backup_spec;
use super::super::effect::{CancelResult, Effect, Note, Plan, Playbook, RUN_LABEL, Stage};
use super::super::engine::Engine;
use super::super::journal::{Field, Journal, Phase};
use super::super::plan;
use super::Context;

/// A backup that may be hung.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Its name.
    pub name: String,
    /// `Starting` or `Running`.
    pub state: String,
    /// The storage it writes to.
    pub storage: String,
    /// How long it has gone on (since it was created).
    pub age: Duration,
}

/// What the cancellation is planned from.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Candidates old enough, with the fresh check of their storage (`Err`: it failed).
    pub due: Vec<(Candidate, Result<(), String>)>,
    /// How long until the youngest other candidate is old enough.
    pub wait: Option<Duration>,
    /// Backups the journal says were cancelled that are still there, not being deleted.
    pub redo: Vec<String>,
}

impl Observed {
    /// Whether there is a backup to cancel now.
    pub fn cancels(&self) -> bool {
        self.due.iter().any(|(_, check)| check.is_err())
    }
}

/// The candidates among `backups` (pure): see the module's rule. Names the journal already
/// records are left to the redo.
pub fn candidates(
    backups: &[PerconaXtraDBClusterBackup],
    cluster: &str,
    journal: &Journal,
    now: jiff::Timestamp,
) -> Vec<Candidate> {
    let protected: BTreeSet<&str> = journal.protected.iter().map(String::as_str).collect();
    backups
        .iter()
        .filter_map(|b| {
            let state = b.status.as_ref()?.state.clone()?;
            let storage = b.spec.storage_name.clone()?;
            let name = b.metadata.name.clone()?;
            let created = b.metadata.creation_timestamp.as_ref()?.0;
            let ours = b
                .metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(RUN_LABEL));
            let hangs = state == state::STARTING || state == state::RUNNING;
            (b.spec.pxc_cluster == cluster
                && hangs
                && b.metadata.deletion_timestamp.is_none()
                && protected.contains(storage.as_str())
                && created < journal.failed_over_at
                && !ours
                && !journal.cancelled_backups.contains(&name))
            .then(|| Candidate {
                name,
                state,
                storage,
                age: Duration::try_from(now.duration_since(created)).unwrap_or(Duration::ZERO),
            })
        })
        .collect()
}

/// Lists the cluster's backups, and checks the storage of every candidate old enough.
///
/// # Errors
///
/// The Kubernetes error when the backups cannot be listed.
pub async fn observe(
    engine: &Engine,
    ctx: &Context<'_>,
    object: &DynamicObject,
    journal: &Journal,
) -> Result<Observed, kube::Error> {
    let bound = ctx
        .config
        .responder
        .failover
        .cancel_hung_backups_after
        .get();
    if bound.is_zero() {
        return Ok(Observed::default());
    }
    let api: Api<PerconaXtraDBClusterBackup> =
        Api::namespaced(engine.client().clone(), &ctx.key.namespace);
    let backups = api.list(&ListParams::default()).await?.items;
    let redo = backups
        .iter()
        .filter(|b| {
            b.metadata.deletion_timestamp.is_none()
                && b.metadata
                    .name
                    .as_ref()
                    .is_some_and(|n| journal.cancelled_backups.contains(n))
        })
        .filter_map(|b| b.metadata.name.clone())
        .collect();
    let mut observed = Observed {
        redo,
        ..Observed::default()
    };
    let spec = backup_spec(object);
    let mut checked: Vec<(String, Result<(), String>)> = Vec::new();
    for candidate in candidates(&backups, &ctx.key.name, journal, ctx.now) {
        let Some(left) = bound.checked_sub(candidate.age).filter(|d| !d.is_zero()) else {
            let check = match checked.iter().find(|(s, _)| *s == candidate.storage) {
                Some((_, check)) => check.clone(),
                None => {
                    let check =
                        check_storage(engine, ctx, &spec, journal, &candidate.storage).await;
                    checked.push((candidate.storage.clone(), check.clone()));
                    check
                }
            };
            observed.due.push((candidate, check));
            continue;
        };
        observed.wait = Some(observed.wait.map_or(left, |w| w.min(left)));
    }
    Ok(observed)
}

/// A fresh check of `storage` as it was before the failover (the journal's copy when the
/// failover rewrote it, else the cluster's entry).
async fn check_storage(
    engine: &Engine,
    ctx: &Context<'_>,
    spec: &Value,
    journal: &Journal,
    storage: &str,
) -> Result<(), String> {
    let definition = journal
        .original_storage(storage)
        .cloned()
        .or_else(|| plan::get(spec, &Field::Storage(storage.to_owned())))
        .unwrap_or(Value::Null);
    engine
        .verify(
            Playbook::Failover,
            Stage::VerifyPrimary,
            ctx.key,
            storage,
            &definition,
        )
        .await
}

/// Plans the cancellation of the hung backups `observed` found (pure): the journal first,
/// then the deletes, an Event and a count for each; a notice and a `refused` count for a
/// backup whose storage passed its check.
pub fn plan(mut journal: Journal, observed: &Observed) -> Plan {
    let mut effects = Vec::new();
    let mut cancelled = Vec::new();
    let mut refusals = Vec::new();
    for (candidate, check) in &observed.due {
        match check {
            Err(problem) => {
                journal.cancelled_backups.push(candidate.name.clone());
                cancelled.push((candidate, problem));
            }
            Ok(()) => refusals.push(candidate),
        }
    }
    if !cancelled.is_empty() {
        effects.push(Effect::WriteCluster {
            playbook: Playbook::Failover,
            backup: None,
            journal: journal.clone(),
        });
    }
    for (candidate, problem) in &cancelled {
        effects.push(Effect::DeleteBackup {
            name: candidate.name.clone(),
        });
        let message = format!(
            "deleted backup {} ({} for {} on storage {:?}, which fails its check: {problem}) so \
             that the operator frees its backup lock and stops its Job; backups now go to {:?}",
            candidate.name,
            candidate.state,
            human(candidate.age),
            candidate.storage,
            journal.target_storage,
        );
        effects.push(Effect::Event(
            Note::new(EventType::Warning, "BackupCancelled", "Failover", message).when_recorded(
                format!(
                    "would delete hung backup {} ({} for {} on failed storage {:?})",
                    candidate.name,
                    candidate.state,
                    human(candidate.age),
                    candidate.storage
                ),
            ),
        ));
        effects.push(Effect::CountCancel(CancelResult::Cancelled));
    }
    for candidate in refusals {
        effects.push(Effect::Notice(Note::new(
            EventType::Normal,
            "BackupLeftRunning",
            "Failover",
            format!(
                "left backup {} running ({} for {}): its storage {:?} passes a fresh check",
                candidate.name,
                candidate.state,
                human(candidate.age),
                candidate.storage
            ),
        )));
        effects.push(Effect::CountCancel(CancelResult::Refused));
    }
    let names: Vec<&str> = cancelled.iter().map(|(c, _)| c.name.as_str()).collect();
    Plan::report(
        Some(Phase::FailedOver),
        Some(Duration::ZERO),
        format!("cancelled hung backups: {}", names.join(", ")),
    )
    .with(effects)
    .when_recorded(format!("would cancel hung backups: {}", names.join(", ")))
}

/// The deletes of backups the journal records as cancelled that are still there: prepended
/// to whatever the step does, so a crash between the journal write and a delete converges.
pub fn redo(observed: &Observed) -> Vec<Effect> {
    observed
        .redo
        .iter()
        .map(|name| Effect::DeleteBackup { name: name.clone() })
        .collect()
}

/// A duration in whole seconds, as people read it.
fn human(d: Duration) -> String {
    let whole = jiff::SignedDuration::from_secs(i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    format!("{whole:#}")
}

#[cfg(test)]
mod tests;
