//! `backstop check`: the runbook's first step ("identify S3 service failure") in one command.
//! It lists the clusters once, probes every target once with the same cycle as the service
//! (credentials read as the backup Job reads them), and reports each target's operations,
//! any canary object it could not delete, and each storage's newest successful backup.
//! Healthy means every target is up.
//!
//! Without a reachable Kubernetes cluster (a workstation, say) it still checks the static
//! targets (`targets:`), and says that discovery was skipped and why; a target whose
//! credentials are in a Secret is reported as such.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use futures::StreamExt as _;
use kube::Api;
use kube::api::ListParams;
use serde::Serialize;

use crate::clock::Clock;
use crate::config::Config;
use crate::probe::cycle::{CycleOptions, Outcome, TargetState};
use crate::probe::discovery::desired_targets;
use crate::probe::once::probe_once;
use crate::pxc::{PerconaXtraDBCluster, PerconaXtraDBClusterBackup};
use crate::s3::client::Timeouts;
use crate::watch::index::{BackupIndex, Epoch};

/// Why a check could not run (as opposed to finding something unhealthy).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Listing clusters or backups failed.
    #[error("reading the cluster: {0}")]
    Kube(#[from] kube::Error),
    /// No cluster could be reached and no static target is configured.
    #[error(
        "no Kubernetes cluster reachable ({0}) and no static targets configured: nothing to check"
    )]
    NothingToCheck(String),
}

/// One operation of one target.
#[derive(Debug, Clone, Serialize)]
pub struct OperationReport {
    /// `head_bucket`, `put_object`, ...
    pub operation: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// How long it took.
    pub seconds: f64,
    /// Error class when it failed.
    pub class: Option<String>,
    /// Error message when it failed.
    pub message: Option<String>,
}

/// One target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// The target's id (the `target` label).
    pub target: String,
    /// Who uses it: `namespace/cluster/storage` or `static/NAME`.
    pub used_by: Vec<String>,
    /// All essential operations passed.
    pub up: bool,
    /// Each operation.
    pub operations: Vec<OperationReport>,
    /// Canary objects the cycle wrote and could not delete (the credentials may put but not
    /// delete, or the delete timed out): keys in the target's bucket, to remove by hand. The
    /// service deletes them on a later cycle once deletion works.
    pub leftover_canaries: Vec<String>,
}

/// The newest successful backup of one storage.
#[derive(Debug, Clone, Serialize)]
pub struct StorageReport {
    /// `namespace/cluster/storage`.
    pub storage: String,
    /// Completion time of the newest Succeeded backup (RFC 3339).
    pub last_success: String,
    /// Its age in seconds.
    pub age_seconds: i64,
}

/// The whole diagnosis.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// Every target probed.
    pub targets: Vec<TargetReport>,
    /// Every storage with a successful backup.
    pub backups: Vec<StorageReport>,
    /// What limited the check (no cluster reachable, so no discovery).
    pub notes: Vec<String>,
    /// Whether every target is up.
    pub healthy: bool,
}

/// Where the check reads clusters from.
#[derive(Clone, Copy)]
pub enum Cluster<'a> {
    /// A reachable Kubernetes API.
    Reachable(&'a kube::Client),
    /// None could be reached; why (shown in the report).
    Unreachable(&'a str),
}

impl std::fmt::Debug for Cluster<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Reachable(_) => f.write_str("Reachable"),
            Self::Unreachable(why) => f.debug_tuple("Unreachable").field(why).finish(),
        }
    }
}

/// Probes everything once.
///
/// # Errors
///
/// [`CheckError`] when a cluster was reachable but listing from it failed, or when there is
/// nothing to check at all (no cluster and no static targets).
pub async fn run(
    config: &Config,
    cluster: Cluster<'_>,
    clock: Arc<dyn Clock>,
) -> Result<CheckReport, CheckError> {
    let mut index = BackupIndex::new();
    let mut notes = Vec::new();
    let client = match cluster {
        Cluster::Reachable(client) => Some(client),
        Cluster::Unreachable(why) => {
            if config.targets.is_empty() {
                return Err(CheckError::NothingToCheck(why.to_owned()));
            }
            if config.probe.discover {
                notes.push(format!(
                    "no Kubernetes cluster reachable ({why}): targets were not discovered from clusters; only the {} static target(s) were checked",
                    config.targets.len()
                ));
            }
            None
        }
    };
    if let Some(client) = client {
        list_into(&mut index, config, client).await?;
    }

    let (targets, problems) = desired_targets(index.storages(), index.cluster_metadata(), config);
    for problem in problems {
        tracing::info!(%problem, "storage not probed");
    }
    let options = CycleOptions::from(&config.probe);
    let timeouts = Timeouts {
        connect: config.probe.timeout.get(),
        operation: config.probe.timeout.get(),
    };
    let concurrency = usize::try_from(config.probe.concurrency)
        .unwrap_or(1)
        .max(1);
    let mut reports: Vec<TargetReport> = futures::stream::iter(targets)
        .map(|target| {
            let options = options.clone();
            async move {
                let mut state = TargetState::default();
                let result = probe_once(&target, client, &options, timeouts, &mut state).await;
                let leftover_canaries = state.leftover_canaries().to_vec();
                TargetReport {
                    target: target.id(),
                    used_by: target
                        .users
                        .iter()
                        .map(|u| match (u.namespace(), u.cluster()) {
                            ("", "") => format!("static/{}", u.storage()),
                            (ns, c) => format!("{ns}/{c}/{}", u.storage()),
                        })
                        .collect(),
                    up: result.up,
                    operations: result
                        .operations
                        .iter()
                        .map(|o| {
                            let (class, message) = match &o.outcome {
                                Outcome::Ok => (None, None),
                                Outcome::Err { class, message } => {
                                    (Some(class.as_str().to_owned()), Some(message.clone()))
                                }
                            };
                            OperationReport {
                                operation: o.operation.as_str().to_owned(),
                                ok: o.is_ok(),
                                seconds: o.duration.as_secs_f64(),
                                class,
                                message,
                            }
                        })
                        .collect(),
                    leftover_canaries,
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    reports.sort_by(|a, b| a.target.cmp(&b.target));

    let now = clock.now();
    let backups: Vec<StorageReport> = index
        .last_success()
        .into_iter()
        .map(|(k, t)| StorageReport {
            storage: format!("{}/{}/{}", k.namespace, k.cluster, k.storage),
            last_success: t.to_string(),
            age_seconds: now.as_second().saturating_sub(t.as_second()),
        })
        .collect();
    let healthy = reports.iter().all(|r| r.up);
    Ok(CheckReport {
        targets: reports,
        backups,
        notes,
        healthy,
    })
}

/// Lists the clusters and backups of the configured namespaces into `index`.
async fn list_into(
    index: &mut BackupIndex,
    config: &Config,
    client: &kube::Client,
) -> Result<(), CheckError> {
    for scope in config.kubernetes.scopes() {
        let clusters: Api<PerconaXtraDBCluster> = match scope {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        for cluster in clusters.list(&ListParams::default()).await?.items {
            index.upsert_cluster(&cluster, Epoch::default());
        }
        let backups: Api<PerconaXtraDBClusterBackup> = match scope {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        for backup in backups.list(&ListParams::default()).await?.items {
            index.upsert_backup(&backup, Epoch::default());
        }
    }

    Ok(())
}

/// The report as aligned text.
pub fn render_table(report: &CheckReport) -> String {
    let mut rows: Vec<[String; 5]> = vec![[
        "TARGET".into(),
        "OPERATION".into(),
        "RESULT".into(),
        "LATENCY".into(),
        "ERROR".into(),
    ]];
    for t in &report.targets {
        for o in &t.operations {
            rows.push([
                t.target.clone(),
                o.operation.clone(),
                if o.ok { "ok".into() } else { "FAIL".into() },
                format!("{:.0}ms", o.seconds * 1000.0),
                match (&o.class, &o.message) {
                    (Some(c), Some(m)) => format!("{c}: {}", m.lines().next().unwrap_or_default()),
                    _ => String::new(),
                },
            ]);
        }
    }
    let mut widths = [0usize; 5];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    let _ = writeln!(out);
    let mut by_target: BTreeMap<&str, (&bool, &Vec<String>)> = BTreeMap::new();
    for t in &report.targets {
        by_target.insert(&t.target, (&t.up, &t.used_by));
    }
    for (target, (up, users)) in by_target {
        let _ = writeln!(
            out,
            "{} {target} (used by {})",
            if *up { "UP  " } else { "DOWN" },
            users.join(", ")
        );
    }
    for t in &report.targets {
        for key in &t.leftover_canaries {
            let _ = writeln!(
                out,
                "LEFTOVER canary object {key:?} in {} could not be deleted (may the credentials delete?); remove it by hand",
                t.target
            );
        }
    }
    for note in &report.notes {
        let _ = writeln!(out, "NOTE {note}");
    }
    if !report.backups.is_empty() {
        let _ = writeln!(out);
        for b in &report.backups {
            let _ = writeln!(
                out,
                "last successful backup of {}: {} ({}h{:02}m ago)",
                b.storage,
                b.last_success,
                b.age_seconds / 3600,
                (b.age_seconds % 3600) / 60
            );
        }
    }
    let _ = writeln!(
        out,
        "\n{}",
        if report.healthy {
            "healthy"
        } else {
            "UNHEALTHY"
        }
    );
    out
}
