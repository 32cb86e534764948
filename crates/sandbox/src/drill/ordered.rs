//! The drill's ordered fallback targets: the cluster has two secondaries. After the
//! failover to the first, the first fails too and the second takes over (with a cover
//! backup there); then recovery in reverse: the first secondary recovers and, after the
//! hold-down, takes the backups back; the primary's recovery is the drill's usual revert.

use std::time::Duration;

use ::kube::Api;

use backstop::config::{Config, HumanDuration};
use backstop::pxc::{PerconaXtraDBClusterBackup, state};
use backstop::responder::journal::{Journal, Phase};

use super::super::s3::{self, Fault, Rule};
use super::super::world::{self, World};
use super::{DrillError, Timeline, cluster_event, read_cluster_journal, setup, wait};

/// How long a recovered secondary must pass before it takes the backups back: three probe
/// intervals of the drill, as `10m` is twenty of production's.
const MOVE_UP_AFTER: Duration = Duration::from_secs(3);

/// Gives the sample cluster its second secondary, and the compressed move settings.
pub(super) fn configure(world: &World, config: &mut Config) {
    world.ordered_secondaries(config);
    config.responder.failover.buffer_after_secondary_failures = 2;
    config.responder.failover.move_up_after = HumanDuration(MOVE_UP_AFTER);
}

/// Breaks the first secondary, waits for the second to take over and to hold a cover
/// backup, repairs the first and waits for it to take the backups back.
pub(super) async fn down_and_back_up(world: &World, t: &mut Timeline) -> Result<(), DrillError> {
    let faults = world.s3.faults();
    let broken = faults
        .set(Rule::new(Fault::ServiceUnavailable).in_region(s3::SECONDARY_REGION))
        .await
        .map_err(setup)?;
    t.mark(format!(
        "fault: first secondary's region {} answers 503",
        s3::SECONDARY_REGION
    ));
    let second = wait("the second secondary takes over", || {
        on_secondary(world, world::TERTIARY_STORAGE)
    })
    .await?;
    let said = wait("the MovedToSecondary Event", || {
        cluster_event(world, "MovedToSecondary")
    })
    .await?;
    t.mark(format!("move down: {said}"));
    let landed = wait("a cover backup lands on the second secondary", || {
        covered(world, &second, world::TERTIARY_BUCKET)
    })
    .await?;
    t.mark(format!(
        "cover backup succeeded on the second secondary: {landed}"
    ));

    faults.clear(broken).await.map_err(setup)?;
    t.mark(format!(
        "repair: first secondary's region {} answers again",
        s3::SECONDARY_REGION
    ));
    let first = wait("the first secondary takes the backups back", || {
        on_secondary(world, "backstop-secondary")
    })
    .await?;
    let said = wait("the MovedUp Event", || cluster_event(world, "MovedUp")).await?;
    t.mark(format!(
        "move up after {}s of passing checks: {said}",
        MOVE_UP_AFTER.as_secs()
    ));
    let landed = wait("a cover backup lands on the first secondary again", || {
        covered(world, &first, world::SECONDARY_BUCKET)
    })
    .await?;
    t.mark(format!(
        "cover backup succeeded on the first secondary: {landed}"
    ));
    Ok(())
}

/// The journal, once the run is failed over to the secondary named `storage_name` in the
/// policy, with its cover backup started.
async fn on_secondary(world: &World, storage_name: &str) -> Result<Option<Journal>, String> {
    Ok(read_cluster_journal(world).await?.filter(|j| {
        j.phase == Phase::FailedOver
            && j.target_secondary.as_deref() == Some(storage_name)
            && j.cover_backup.is_some()
    }))
}

/// The cover backup of `journal`'s latest move and where it landed, once it succeeded in
/// `bucket`.
async fn covered(world: &World, journal: &Journal, bucket: &str) -> Result<Option<String>, String> {
    let Some(name) = &journal.cover_backup else {
        return Ok(None);
    };
    let api: Api<PerconaXtraDBClusterBackup> =
        Api::namespaced(world.client.clone(), world::NAMESPACE);
    let backup = api.get_opt(name).await.map_err(|e| e.to_string())?;
    Ok(backup.and_then(|b| {
        let status = b.status?;
        let destination = status.destination?;
        (status.state.as_deref() == Some(state::SUCCEEDED)
            && destination.starts_with(&format!("s3://{bucket}/")))
        .then(|| format!("{name} -> {destination}"))
    }))
}
