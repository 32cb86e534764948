//! The playbooks by hand: `backstop failover`, `backstop revert` and `backstop status`.
//!
//! A manual failover records a firing `manual` episode in the cluster's intent, and a manual
//! revert marks every episode resolved; then the same [`Engine`] steps run here until the
//! cluster gets there. Because the request is recorded as intent, a running Backstop agrees
//! with it instead of undoing it, and either can finish what the other started.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use crate::clock::Clock;
use crate::config::Config;

use super::alertmanager::AlertStatus;
use super::applier::{RecordError, Recorded};
use super::cluster::{ClusterKey, cluster_api, is_paused, read_intent, read_journal};
use super::engine::{Engine, EngineError};
use super::intent::{Intent, MANUAL_KEY};
use super::journal::Phase;
use super::metrics::ResponderMetrics;

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
    /// The cluster is not in `clusters`.
    #[error("cluster {0} is not managed by Backstop (add it to `clusters`)")]
    Unmanaged(ClusterKey),
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
    if engine.managed(key).is_none() {
        return Err(ManualError::Unmanaged(key.clone()));
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

/// One managed cluster as `backstop status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StatusRow {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub cluster: String,
    /// Whether the cluster exists.
    pub found: bool,
    /// Whether the alerts want it failed over.
    pub wants_failover: bool,
    /// Whether the kill switch is on.
    pub paused: bool,
    /// The journal, if any (or the problem reading it).
    pub journal: Option<serde_json::Value>,
}

/// Reads every managed cluster (optionally one namespace or cluster).
///
/// # Errors
///
/// The Kubernetes error when a cluster cannot be read.
pub async fn status(
    client: &kube::Client,
    config: &Config,
    namespace: Option<&str>,
    cluster: Option<&str>,
) -> Result<Vec<StatusRow>, kube::Error> {
    let mut rows = Vec::new();
    for managed in &config.clusters {
        if namespace.is_some_and(|n| n != managed.namespace)
            || cluster.is_some_and(|c| c != managed.name)
        {
            continue;
        }
        let object = cluster_api(client, &managed.namespace)
            .get_opt(&managed.name)
            .await?;
        let row = match object {
            None => StatusRow {
                namespace: managed.namespace.clone(),
                cluster: managed.name.clone(),
                found: false,
                wants_failover: false,
                paused: false,
                journal: None,
            },
            Some(object) => StatusRow {
                namespace: managed.namespace.clone(),
                cluster: managed.name.clone(),
                found: true,
                wants_failover: read_intent(&object).wants_failover(),
                paused: is_paused(&object),
                journal: match read_journal(&object) {
                    Ok(j) => j.and_then(|j| serde_json::to_value(j).ok()),
                    Err(problem) => Some(json!({"error": problem})),
                },
            },
        };
        rows.push(row);
    }
    Ok(rows)
}

/// Renders status rows as aligned columns.
pub fn render_table(rows: &[StatusRow]) -> String {
    let mut lines = vec![
        [
            "NAMESPACE",
            "CLUSTER",
            "INTENT",
            "PHASE",
            "TARGET",
            "SINCE",
            "RUN",
            "MESSAGE",
        ]
        .map(str::to_owned),
    ];
    for row in rows {
        let j = row.journal.as_ref();
        let field = |k: &str| {
            j.and_then(|j| j.get(k))
                .and_then(|v| v.as_str())
                .unwrap_or("-")
                .to_owned()
        };
        let intent = if !row.found {
            "not found"
        } else if row.paused {
            "paused"
        } else if row.wants_failover {
            "failover"
        } else {
            "normal"
        };
        let since = j
            .and_then(|j| {
                j.get("finishedAt")
                    .or_else(|| j.get("revertedAt"))
                    .or_else(|| j.get("movedToBufferAt"))
                    .or_else(|| j.get("failedOverAt"))
            })
            .and_then(|v| v.as_str())
            .unwrap_or("-")
            .to_owned();
        let moved = j.is_some_and(|j| j.get("movedToBufferAt").is_some());
        let target = match (field("targetKind").as_str(), field("targetStorage")) {
            ("-", _) => "-".to_owned(),
            (kind, storage) if moved => format!("{kind}:{storage} (moved from the secondary)"),
            (kind, storage) => format!("{kind}:{storage}"),
        };
        lines.push([
            row.namespace.clone(),
            row.cluster.clone(),
            intent.to_owned(),
            match field("phase").as_str() {
                "-" => "never failed over".to_owned(),
                phase => phase.to_owned(),
            },
            target,
            since,
            field("runId"),
            j.and_then(|j| j.get("message").or_else(|| j.get("error")))
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned(),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0))
        .collect();
    lines
        .iter()
        .map(|l| {
            l.iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(journal: serde_json::Value) -> StatusRow {
        StatusRow {
            namespace: "ns".into(),
            cluster: "c1".into(),
            found: true,
            wants_failover: true,
            paused: false,
            journal: Some(journal),
        }
    }

    #[test]
    fn a_run_that_moved_to_the_buffer_says_so_and_since_when() {
        let table = render_table(&[
            row(json!({
                "phase": "FailedOver", "targetKind": "secondary", "targetStorage": "dr",
                "failedOverAt": "2026-11-24T03:10:30Z", "runId": "r1",
            })),
            row(json!({
                "phase": "FailedOver", "targetKind": "buffer", "targetStorage": "buf",
                "failedOverAt": "2026-11-24T03:10:30Z",
                "movedToBufferAt": "2026-11-24T03:20:30Z", "runId": "r2",
                "message": "the secondary storage \"dr\" failed 3 checks in a row",
            })),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[1].contains("secondary:dr  "), "{table}");
        assert!(lines[1].contains("2026-11-24T03:10:30Z"), "{table}");
        assert!(
            lines[2].contains("buffer:buf (moved from the secondary)"),
            "{table}"
        );
        assert!(lines[2].contains("2026-11-24T03:20:30Z"), "{table}");
        assert!(lines[2].contains("failed 3 checks"), "{table}");
    }
}
