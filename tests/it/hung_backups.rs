//! No backup left hanging on a failed target, against both API backends: the primary hangs
//! (accepts connections, never answers), a scheduled backup to it stays Running with no
//! operator deadline to end it; once Backstop fails the cluster over it deletes that backup,
//! the operator's finalizer frees the lock, and the cover backup on the secondary succeeds.
//! With `allowParallel: false` the cover backup would otherwise wait behind the hung one
//! forever; with parallel backups no hung backup to the failed target is left running.

use std::sync::Arc;
use std::time::Duration;

use backstop::clock::{ManualClock, SystemClock};
use backstop::config::HumanDuration;
use backstop::pxc::PerconaXtraDBClusterBackup;
use backstop::responder::cluster::{cluster_api, read_journal};
use backstop::responder::journal::Phase;
use backstop_sandbox::operator::OperatorOptions;
use backstop_sandbox::operator::lifecycle::lock_name;
use backstop_sandbox::s3::{self, Fault, Rule};
use backstop_sandbox::world::{self, WorldOptions};
use jiff::SignedDuration;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::common::fixtures::firing;
use crate::common::sandbox::{self, DEADLINE, Running};
use crate::common::{self, Backend, on_both_backends};
use crate::responder::{fast, notify, wait_event};

async fn start(backend: Backend, allow_parallel: bool) -> (Running, ManualClock) {
    start_with(backend, allow_parallel, false).await
}

async fn start_with(
    backend: Backend,
    allow_parallel: bool,
    dry_run: bool,
) -> (Running, ManualClock) {
    let clock = ManualClock::new("2026-11-24T12:00:30Z".parse().unwrap());
    let options = WorldOptions {
        clock: Arc::new(clock.clone()),
        operator_interval: None,
        history: 1,
        retention: 10,
        operator: OperatorOptions {
            upload_wait: Duration::from_millis(300),
            ..OperatorOptions::default()
        },
        ..common::world_on(backend)
    };
    let r = sandbox::start(options, Arc::new(SystemClock), |c| {
        fast(c);
        c.responder.failover.cancel_hung_backups_after = HumanDuration(Duration::from_secs(1));
        c.responder.dry_run = dry_run;
    })
    .await;
    cluster_api(&r.world.client, world::NAMESPACE)
        .patch(
            world::CLUSTER,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"backup": {"allowParallel": allow_parallel}}})),
        )
        .await
        .unwrap();
    (r, clock)
}

fn backups(r: &Running) -> Api<PerconaXtraDBClusterBackup> {
    Api::namespaced(r.world.client.clone(), world::NAMESPACE)
}

async fn state(r: &Running, name: &str) -> Option<String> {
    backups(r)
        .get_opt(name)
        .await
        .unwrap()
        .map(|b| b.status.and_then(|s| s.state).unwrap_or_default())
}

/// The `backstop_backups_cancelled_total` sample of the sandbox's cluster at 1, by result.
fn cancelled(result: &str) -> String {
    format!(
        "backstop_backups_cancelled_total{{namespace=\"{}\",cluster=\"{}\",result=\"{result}\"}} 1",
        world::NAMESPACE,
        world::CLUSTER
    )
}

/// Hangs the primary region and lets the schedule start a backup to it, which stays Running.
async fn hang_primary(r: &Running, clock: &ManualClock) -> String {
    r.world.operator.step().await.unwrap();
    r.world
        .s3
        .faults()
        .set(Rule::new(Fault::Hang).in_region(s3::PRIMARY_REGION))
        .await
        .unwrap();
    clock.advance(SignedDuration::from_secs(60));
    let report = r.world.operator.step().await.unwrap();
    let hung = report
        .running
        .first()
        .cloned()
        .expect("a hung scheduled backup");
    assert_eq!(state(r, &hung).await.as_deref(), Some("Running"));
    hung
}

async fn hung_backup_is_cancelled_and_the_cover_backup_lands(backend: Backend, parallel: bool) {
    let (r, clock) = start(backend, parallel).await;
    let hung = hang_primary(&r, &clock).await;

    notify(&r.base, &firing("f-hang", "2026-11-24T12:01:30Z")).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let cover = loop {
        r.world.operator.step().await.unwrap();
        let object = cluster_api(&r.world.client, world::NAMESPACE)
            .get(world::CLUSTER)
            .await
            .unwrap();
        let journal = read_journal(&object).unwrap();
        if let Some(j) = journal.filter(|j| j.phase == Phase::FailedOver)
            && let Some(cover) = j.cover_backup.clone()
            && state(&r, &cover).await.as_deref() == Some("Succeeded")
            && j.cancelled_backups.contains(&hung)
            && state(&r, &hung).await.is_none()
        {
            assert_eq!(j.cancelled_backups, std::slice::from_ref(&hung));
            break cover;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cover backup never succeeded, or {hung} was never cancelled: {:?}; {:?}; {:?}",
            state(&r, &hung).await,
            crate::responder::all_events(&r).await,
            read_journal(
                &cluster_api(&r.world.client, world::NAMESPACE)
                    .get(world::CLUSTER)
                    .await
                    .unwrap()
            )
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(cover.starts_with("backstop-cover-"), "{cover}");
    // The hung backup is gone (checked above): deleted by Backstop, its finalizer released by
    // the operator.
    let said = wait_event(&r, "BackupCancelled").await;
    let message = said[0].message.clone().unwrap_or_default();
    assert!(
        message.contains(&format!("deleted backup {hung} (Running for"))
            && message.contains("which fails its check"),
        "{message}"
    );
    r.wait_until("the cancellation counted", |m| {
        m.contains(&cancelled("cancelled"))
    })
    .await;
    // No backup to the failed primary is still running.
    let still: Vec<String> = backups(&r)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|b| {
            b.spec.storage_name.as_deref() == Some(world::PRIMARY_STORAGE)
                && b.metadata.deletion_timestamp.is_none()
                && b.status.as_ref().and_then(|s| s.state.as_deref()) == Some("Running")
        })
        .filter_map(|b| b.metadata.name)
        .collect();
    assert!(still.is_empty(), "{still:?}");
    if !parallel {
        let leases: Api<Lease> = Api::namespaced(r.world.client.clone(), world::NAMESPACE);
        let holder = leases
            .get_opt(&lock_name(world::CLUSTER))
            .await
            .unwrap()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .unwrap_or_default();
        assert!(!holder.starts_with(&format!("{hung}-")), "{holder}");
    }
    r.stop().await;
}

on_both_backends!(with_the_lock);
async fn with_the_lock(backend: Backend) {
    hung_backup_is_cancelled_and_the_cover_backup_lands(backend, false).await;
}

on_both_backends!(without_the_lock);
async fn without_the_lock(backend: Backend) {
    hung_backup_is_cancelled_and_the_cover_backup_lands(backend, true).await;
}

on_both_backends!(a_dry_run_says_what_it_would_cancel_and_deletes_nothing);
async fn a_dry_run_says_what_it_would_cancel_and_deletes_nothing(backend: Backend) {
    let (r, clock) = start_with(backend, false, true).await;
    let hung = hang_primary(&r, &clock).await;
    notify(&r.base, &firing("f-hang-dry", "2026-11-24T12:01:30Z")).await;
    let said = wait_event(&r, "BackupCancelled").await;
    let message = said[0].message.clone().unwrap_or_default();
    assert!(
        message.starts_with(&format!(
            "[dry-run] would delete hung backup {hung} (Running for"
        )),
        "{message}"
    );
    r.wait_until("the dry-run cancellation counted", |m| {
        m.contains(&cancelled("dry_run"))
    })
    .await;
    // Nothing was written or deleted: the backup still runs, the cluster has no journal.
    r.world.operator.step().await.unwrap();
    assert_eq!(state(&r, &hung).await.as_deref(), Some("Running"));
    let object = cluster_api(&r.world.client, world::NAMESPACE)
        .get(world::CLUSTER)
        .await
        .unwrap();
    assert_eq!(read_journal(&object).unwrap(), None);
    r.stop().await;
}
