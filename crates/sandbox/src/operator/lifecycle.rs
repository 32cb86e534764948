//! The operator's backup lifecycle rules (1.17 and later; `../shared/pxc-operator.md`, "Backup
//! lock and deadlines"): the per-cluster lock that serialises backups when
//! `spec.backup.allowParallel` is `false`, the `release-lock` finalizer, and the deadlines.
//!
//! - `startingDeadlineSeconds` fails a backup still new that long after it was created;
//! - `runningDeadlineSeconds` fails a backup still `Starting` that long after its Job was
//!   created (the CRD defaults it to 1200 on the cluster; a real API server fills it in);
//! - `suspendedDeadlineSeconds` fails a backup suspended that long;
//! - once `Running`, only the Job's `activeDeadlineSeconds` can fail it (and `backoffLimit`).
//!
//! A backup's own `spec` values override the cluster's `spec.backup`.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::Value;

use backstop::pxc::{self, PerconaXtraDBCluster, PerconaXtraDBClusterBackup};

use super::OperatorError;

/// The finalizer the operator puts on every backup: deleting the backup frees its lock.
pub const RELEASE_LOCK_FINALIZER: &str = "internal.percona.com/release-lock";

/// The lock Lease of a cluster's backups.
pub fn lock_name(cluster: &str) -> String {
    format!("pxc-{cluster}-backup-lock")
}

/// The lock's holder for a backup: `<backup>-<uid>`.
pub fn holder(backup: &PerconaXtraDBClusterBackup) -> String {
    format!(
        "{}-{}",
        backup.metadata.name.as_deref().unwrap_or_default(),
        backup.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// The deadlines and Job limits in force for one backup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Whether backups of the cluster may run side by side (no lock). Default `true`.
    pub allow_parallel: bool,
    /// `startingDeadlineSeconds`.
    pub starting: Option<i64>,
    /// `runningDeadlineSeconds`.
    pub running: Option<i64>,
    /// `suspendedDeadlineSeconds`.
    pub suspended: Option<i64>,
    /// The Job's `activeDeadlineSeconds`.
    pub active: Option<i64>,
    /// The Job's `backoffLimit`: retries after the first attempt fails. The simulated operator
    /// retries at once, without the Job controller's back-off; unset means none.
    pub backoff: Option<i64>,
}

impl Limits {
    /// The limits of `backup` of `cluster`: the backup's spec first, then the cluster's.
    pub fn of(cluster: Option<&PerconaXtraDBCluster>, backup: &PerconaXtraDBClusterBackup) -> Self {
        let cluster_backup = cluster.and_then(|c| c.spec.backup.as_ref());
        let field = |key: &str| -> Option<i64> {
            backup
                .spec
                .extra
                .get(key)
                .and_then(Value::as_i64)
                .or_else(|| {
                    cluster_backup
                        .and_then(|b| b.extra.get(key))
                        .and_then(Value::as_i64)
                })
        };
        Self {
            allow_parallel: cluster_backup
                .and_then(|b| b.allow_parallel)
                .unwrap_or(true),
            starting: field("startingDeadlineSeconds"),
            running: field("runningDeadlineSeconds"),
            suspended: field("suspendedDeadlineSeconds"),
            active: field("activeDeadlineSeconds"),
            backoff: field("backoffLimit"),
        }
    }
}

/// Where a backup is, with the times the deadlines count from (on the operator's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// New, since it was created (or first seen by this operator).
    New {
        /// Created at.
        since: Timestamp,
    },
    /// `Starting`, since its Job was created.
    Starting {
        /// Job created at.
        since: Timestamp,
    },
    /// Suspended, since when.
    Suspended {
        /// Suspended at.
        since: Timestamp,
    },
    /// `Running`, since its Job started.
    Running {
        /// Started at.
        since: Timestamp,
    },
}

/// The deadline `phase` has passed at `now`, as the backup's `status.error`; `None` while it
/// may go on.
pub fn deadline_passed(phase: Phase, limits: &Limits, now: Timestamp) -> Option<String> {
    let over = |since: Timestamp, limit: Option<i64>| {
        limit.is_some_and(|s| now.duration_since(since) >= SignedDuration::from_secs(s))
    };
    match phase {
        Phase::New { since } if over(since, limits.starting) => Some(format!(
            "starting deadline seconds exceeded ({}s)",
            limits.starting.unwrap_or_default()
        )),
        Phase::Starting { since } if over(since, limits.running) => Some(format!(
            "running deadline seconds exceeded ({}s)",
            limits.running.unwrap_or_default()
        )),
        Phase::Suspended { since } if over(since, limits.suspended) => Some(format!(
            "suspended deadline seconds exceeded ({}s)",
            limits.suspended.unwrap_or_default()
        )),
        Phase::Running { since } if over(since, limits.active) => Some(format!(
            "Job has reached the specified deadline (activeDeadlineSeconds {}s)",
            limits.active.unwrap_or_default()
        )),
        _ => None,
    }
}

/// Takes the cluster's backup lock for `backup`, or finds it already its own: `true` when the
/// backup holds it. Another holder means the backup waits.
pub async fn acquire(
    client: &kube::Client,
    backup: &PerconaXtraDBClusterBackup,
    now: Timestamp,
) -> Result<bool, OperatorError> {
    let ns = backup.metadata.namespace.clone().unwrap_or_default();
    let api: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let name = lock_name(&backup.spec.pxc_cluster);
    let me = holder(backup);
    if let Some(lease) = api.get_opt(&name).await? {
        return Ok(lease.spec.and_then(|s| s.holder_identity).as_deref() == Some(me.as_str()));
    }
    let lease = Lease {
        metadata: kube::api::ObjectMeta {
            name: Some(name),
            namespace: Some(ns),
            ..Default::default()
        },
        // Holder and acquire time only: the operator's lock has no duration and never expires.
        spec: Some(LeaseSpec {
            holder_identity: Some(me),
            acquire_time: Some(MicroTime(now)),
            ..LeaseSpec::default()
        }),
    };
    match api.create(&PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the cluster's backup lock if `backup` holds it (only the holder releases it).
pub async fn release(
    client: &kube::Client,
    backup: &PerconaXtraDBClusterBackup,
) -> Result<bool, OperatorError> {
    let ns = backup.metadata.namespace.clone().unwrap_or_default();
    let api: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let name = lock_name(&backup.spec.pxc_cluster);
    let Some(lease) = api.get_opt(&name).await? else {
        return Ok(false);
    };
    if lease.spec.and_then(|s| s.holder_identity) != Some(holder(backup)) {
        return Ok(false);
    }
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Sets `backup`'s finalizers to `finalizers` (a merge patch of the list).
pub async fn set_finalizers(
    client: &kube::Client,
    backup: &PerconaXtraDBClusterBackup,
    finalizers: Vec<String>,
) -> Result<(), OperatorError> {
    let ns = backup.metadata.namespace.clone().unwrap_or_default();
    let api: Api<PerconaXtraDBClusterBackup> = Api::namespaced(client.clone(), &ns);
    api.patch(
        backup.metadata.name.as_deref().unwrap_or_default(),
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"metadata": {"finalizers": finalizers}})),
    )
    .await?;
    Ok(())
}

/// Whether `backup` carries `finalizer`.
pub fn has_finalizer(backup: &PerconaXtraDBClusterBackup, finalizer: &str) -> bool {
    backup
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == finalizer))
}

/// The state a backup's status says, `""` when new.
pub fn state_of(backup: &PerconaXtraDBClusterBackup) -> &str {
    backup
        .status
        .as_ref()
        .and_then(|s| s.state.as_deref())
        .unwrap_or_default()
}

/// Whether the state is one a backup leaves only by finishing.
pub fn is_finished(state: &str) -> bool {
    state == pxc::state::SUCCEEDED || state == pxc::state::FAILED
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn each_deadline_counts_from_its_own_phase() {
        let limits = Limits {
            starting: Some(60),
            running: Some(1200),
            suspended: Some(300),
            active: None,
            ..Limits::default()
        };
        let t0 = ts("2026-11-24T12:00:00Z");
        let at = |s: i64| t0 + SignedDuration::from_secs(s);
        assert_eq!(
            deadline_passed(Phase::New { since: t0 }, &limits, at(59)),
            None
        );
        assert!(
            deadline_passed(Phase::New { since: t0 }, &limits, at(60))
                .is_some_and(|e| e.contains("starting deadline"))
        );
        assert_eq!(
            deadline_passed(Phase::Starting { since: t0 }, &limits, at(1199)),
            None
        );
        assert!(
            deadline_passed(Phase::Starting { since: t0 }, &limits, at(1200))
                .is_some_and(|e| e.contains("running deadline"))
        );
        assert!(
            deadline_passed(Phase::Suspended { since: t0 }, &limits, at(300))
                .is_some_and(|e| e.contains("suspended deadline"))
        );
        // Once Running, the operator's deadlines no longer apply: a hung upload runs on.
        assert_eq!(
            deadline_passed(Phase::Running { since: t0 }, &limits, at(1_000_000)),
            None
        );
        let with_job_deadline = Limits {
            active: Some(3600),
            ..limits
        };
        assert!(
            deadline_passed(Phase::Running { since: t0 }, &with_job_deadline, at(3600))
                .is_some_and(|e| e.contains("activeDeadlineSeconds 3600s"))
        );
    }

    #[test]
    fn no_deadline_set_means_none_applies() {
        let t0 = ts("2026-11-24T12:00:00Z");
        let later = t0 + SignedDuration::from_hours(24 * 365);
        for phase in [
            Phase::New { since: t0 },
            Phase::Starting { since: t0 },
            Phase::Suspended { since: t0 },
            Phase::Running { since: t0 },
        ] {
            assert_eq!(deadline_passed(phase, &Limits::default(), later), None);
        }
    }

    #[test]
    fn the_backup_overrides_the_cluster_and_parallel_is_the_default() {
        let cluster: PerconaXtraDBCluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "pxc.percona.com/v1", "kind": "PerconaXtraDBCluster",
            "metadata": {"name": "c1", "namespace": "ns"},
            "spec": {"backup": {"runningDeadlineSeconds": 1200, "startingDeadlineSeconds": 60}},
        }))
        .unwrap();
        let backup: PerconaXtraDBClusterBackup = serde_json::from_value(serde_json::json!({
            "apiVersion": "pxc.percona.com/v1", "kind": "PerconaXtraDBClusterBackup",
            "metadata": {"name": "b1", "namespace": "ns", "uid": "u1"},
            "spec": {"pxcCluster": "c1", "startingDeadlineSeconds": 5},
        }))
        .unwrap();
        let limits = Limits::of(Some(&cluster), &backup);
        assert!(limits.allow_parallel);
        assert_eq!(limits.starting, Some(5));
        assert_eq!(limits.running, Some(1200));
        assert_eq!(holder(&backup), "b1-u1");
        assert_eq!(lock_name("c1"), "pxc-c1-backup-lock");
    }
}
