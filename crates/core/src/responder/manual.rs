//! The playbooks by hand: `backstop failover` and `backstop revert`.
//!
//! A manual failover records a firing `manual` episode in the cluster's intent, and a manual
//! revert marks every episode resolved; then the same [`Engine`] steps run here until the
//! cluster gets there. Because the request is recorded as intent, a running Backstop agrees
//! with it instead of undoing it, and either can finish what the other started.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::config::Config;

use super::alertmanager::AlertStatus;
use super::applier::{RecordError, Recorded};
use super::cluster::{ClusterKey, cluster_api};
use super::engine::{Engine, EngineError};
use super::intent::{Intent, MANUAL_KEY};
use super::journal::Phase;
use super::metrics::ResponderMetrics;
use crate::managed::Resolution;

/// Which playbook to run by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manual {
    /// Fail over now.
    Failover,
    /// Switch back now (after the primary passes its hold-down).
    Revert,
}

/// Why a manual run failed.
#[derive(Debug, thiserror::Error)]
pub enum ManualError {
    /// The cluster is not in `clusters` and did not opt in.
    #[error(
        "cluster {0} is not managed by Backstop (add it to `clusters`, or opt it in: see opt_in)"
    )]
    Unmanaged(ClusterKey),
    /// The cluster opted in, but its opt-in cannot be used.
    #[error("cluster {0} asks to be managed, but: {1}")]
    OptInInvalid(ClusterKey, String),
    /// The cluster does not exist.
    #[error("cluster {0} not found")]
    NotFound(ClusterKey),
    /// A step failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Recording the intent failed.
    #[error("recording the intent: {0}")]
    Record(#[from] RecordError),
    /// Reading the cluster failed.
    #[error("reading the cluster: {0}")]
    Kube(#[from] kube::Error),
}

/// Runs `which` for `key` until the cluster gets there, reporting each step through `say`.
/// Returns the final phase (`None`: nothing was ever failed over).
///
/// # Errors
///
/// [`ManualError`] when the cluster is unknown or a request fails.
pub async fn run(
    client: kube::Client,
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    key: &ClusterKey,
    which: Manual,
    mut say: impl FnMut(&str),
) -> Result<Option<Phase>, ManualError> {
    let engine = Engine::new(
        client.clone(),
        config,
        ResponderMetrics::register(&mut prometheus_client::registry::Registry::default()),
        clock.clone(),
    );
    let listed = engine
        .config()
        .clusters
        .iter()
        .any(|c| c.namespace == key.namespace && c.name == key.name);
    // Without opt-in, only `clusters[]` says who is managed: no need to read the cluster.
    if !listed && !engine.config().opt_in.enabled() {
        return Err(ManualError::Unmanaged(key.clone()));
    }
    let object = cluster_api(&client, &key.namespace)
        .get_opt(&key.name)
        .await?
        .ok_or_else(|| ManualError::NotFound(key.clone()))?;
    match engine.resolution(&object) {
        Resolution::Managed(_) => {}
        Resolution::Unmanaged => return Err(ManualError::Unmanaged(key.clone())),
        Resolution::Invalid(problems) => {
            return Err(ManualError::OptInInvalid(key.clone(), problems.join("; ")));
        }
    }
    let now = clock.now();
    let update = |intent: &mut Intent| match which {
        Manual::Failover => intent.observe(MANUAL_KEY, "manual", now, AlertStatus::Firing, now),
        Manual::Revert => intent.resolve_all(now),
    };
    match engine.record_intent(key, update).await? {
        Recorded::Missing => return Err(ManualError::NotFound(key.clone())),
        Recorded::Paused => {
            say("paused by the kill switch annotation; nothing recorded");
            return Ok(None);
        }
        Recorded::Changed | Recorded::Unchanged => {}
    }
    say(match (which, engine.applier().dry_run()) {
        (_, true) => "dry run: the intent is kept in memory; nothing will be written",
        (Manual::Failover, false) => "recorded a manual failover in the cluster's intent",
        (Manual::Revert, false) => "marked every alert episode resolved in the cluster's intent",
    });
    loop {
        let outcome = engine.reconcile(key).await?;
        say(&outcome.note);
        // A failover either happened (then its cover backup follows) or was refused, which
        // a human wants to hear about now rather than wait on; a revert waits for the
        // hold-down and its test backup.
        // After the cover backup, a failover's requeues are the watch of the secondary,
        // which is the leader's to run: only an immediate next step is followed here.
        let more = match which {
            Manual::Failover => {
                outcome.phase == Some(Phase::FailedOver) && outcome.requeue == Some(Duration::ZERO)
            }
            Manual::Revert => true,
        };
        match outcome.requeue {
            Some(after) if more => {
                tokio::time::sleep(after.max(Duration::from_millis(100))).await;
            }
            _ => return Ok(outcome.phase),
        }
    }
}
