//! The drill's steps for a primary that hangs (accepts connections, never answers): a backup
//! to it that stays Running, Backstop cancelling it once failed over, and the cover backup
//! landing on the new target (with `allowParallel: false`, only once the lock is free).

use std::time::Instant;

use ::kube::Api;
use ::kube::api::{Patch, PatchParams};
use backstop::clock::ManualClock;
use backstop::pxc::{PerconaXtraDBClusterBackup, state};
use backstop::responder::cluster::cluster_api;
use serde_json::json;

use super::{DrillError, Timeline, cluster_event, read_cluster_journal, setup, wait};
use crate::world::{self, World};

/// Serialises the cluster's backups with the operator's lock (`allowParallel: false`).
pub(super) async fn serialise(world: &World, t: &mut Timeline) -> Result<(), DrillError> {
    cluster_api(&world.client, world::NAMESPACE)
        .patch(
            world::CLUSTER,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"backup": {"allowParallel": false}}})),
        )
        .await
        .map_err(setup)?;
    t.mark("allowParallel: false: the operator's lock serialises the cluster's backups");
    Ok(())
}

/// Lets the schedule start a backup to the hung primary and waits until it runs (and hangs).
pub(super) async fn hung_backup(
    world: &World,
    operator_clock: &ManualClock,
    t: &mut Timeline,
) -> Result<String, DrillError> {
    operator_clock.advance(jiff::SignedDuration::from_secs(60));
    let name = wait("a backup to the hung primary runs", || async {
        Ok(backups(world)
            .await?
            .into_iter()
            .find(|b| {
                b.spec.storage_name.as_deref() == Some(world::PRIMARY_STORAGE)
                    && b.status.as_ref().and_then(|s| s.state.as_deref()) == Some(state::RUNNING)
            })
            .and_then(|b| b.metadata.name))
    })
    .await?;
    t.mark(format!(
        "scheduled backup {name} to the primary is Running and hangs (no operator deadline applies)"
    ));
    Ok(name)
}

/// After the failover: Backstop's cancellation of the hung backup, its end, and the cover
/// backup's success on the failover target.
pub(super) async fn cancelled_then_covered(
    world: &World,
    hung: Option<&str>,
    t: &mut Timeline,
    fault_at: Instant,
) -> Result<(), DrillError> {
    if let Some(hung) = hung {
        let said = wait("the BackupCancelled Event", || {
            cluster_event(world, "BackupCancelled")
        })
        .await?;
        t.mark(format!("Event BackupCancelled: {said}"));
        wait("the hung backup is gone", || async {
            let gone = !backups(world)
                .await?
                .iter()
                .any(|b| b.metadata.name.as_deref() == Some(hung));
            Ok(gone.then_some(()))
        })
        .await?;
        t.mark(format!(
            "hung backup {hung} deleted; the operator's finalizer freed its lock and Job"
        ));
    }
    let cover = wait(
        "the cover backup succeeds on the failover target",
        || async {
            let Some(cover) = read_cluster_journal(world)
                .await?
                .and_then(|j| j.cover_backup)
            else {
                return Ok(None);
            };
            let done = backups(world).await?.into_iter().any(|b| {
                b.metadata.name.as_deref() == Some(cover.as_str())
                    && b.status.as_ref().and_then(|s| s.state.as_deref()) == Some(state::SUCCEEDED)
            });
            Ok(done.then_some(cover))
        },
    )
    .await?;
    t.mark(format!(
        "cover backup {cover} Succeeded on the failover target: backups are safe {:.2}s after the fault",
        fault_at.elapsed().as_secs_f64()
    ));
    Ok(())
}

async fn backups(world: &World) -> Result<Vec<PerconaXtraDBClusterBackup>, String> {
    let api: Api<PerconaXtraDBClusterBackup> =
        Api::namespaced(world.client.clone(), world::NAMESPACE);
    Ok(api
        .list(&Default::default())
        .await
        .map_err(|e| e.to_string())?
        .items)
}
