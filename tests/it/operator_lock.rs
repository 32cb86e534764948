//! The simulated operator's backup lock and deadlines (`../shared/pxc-operator.md`, "Backup
//! lock and deadlines") on both API backends: with `allowParallel: false` a backup hung on a
//! store that never answers holds the lock and every later backup waits, with no deadline to
//! end it, until the hung backup is deleted; the deadlines fail what they cover; with
//! parallel backups (the default) there is no lock.

use std::sync::Arc;
use std::time::Duration;

use backstop::clock::ManualClock;
use backstop::pxc::{PerconaXtraDBClusterBackup, state};
use backstop_sandbox::operator::lifecycle::lock_name;
use backstop_sandbox::operator::{OperatorOptions, StepReport};
use backstop_sandbox::s3::{self, Fault, Rule};
use backstop_sandbox::world::{self, World, WorldOptions};
use jiff::SignedDuration;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::common::{self, Backend, on_both_backends};

struct Lab {
    world: World,
    clock: ManualClock,
}

async fn lab(backend: Backend, backup_spec: serde_json::Value) -> Lab {
    let clock = ManualClock::new("2026-11-24T12:00:30Z".parse().unwrap());
    let world = World::start(WorldOptions {
        clock: Arc::new(clock.clone()),
        operator_interval: None,
        history: 0,
        operator: OperatorOptions {
            // A hung upload is left Running after this long; healthy ones take milliseconds.
            upload_wait: Duration::from_millis(300),
            ..OperatorOptions::default()
        },
        ..common::world_on(backend)
    })
    .await
    .unwrap();
    let clusters = backstop::responder::cluster::cluster_api(&world.client, world::NAMESPACE);
    clusters
        .patch(
            world::CLUSTER,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"backup": backup_spec}})),
        )
        .await
        .unwrap();
    Lab { world, clock }
}

impl Lab {
    fn backups(&self) -> Api<PerconaXtraDBClusterBackup> {
        Api::namespaced(self.world.client.clone(), world::NAMESPACE)
    }

    async fn state(&self, name: &str) -> Option<String> {
        self.backups()
            .get_opt(name)
            .await
            .unwrap()
            .map(|b| b.status.and_then(|s| s.state).unwrap_or_default())
    }

    async fn lock_holder(&self) -> Option<String> {
        let leases: Api<Lease> = Api::namespaced(self.world.client.clone(), world::NAMESPACE);
        leases
            .get_opt(&lock_name(world::CLUSTER))
            .await
            .unwrap()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
    }

    async fn step(&self) -> StepReport {
        self.world.operator.step().await.unwrap()
    }

    /// Hangs the primary region and lets the schedule start a backup to it.
    async fn hung_scheduled_backup(&self) -> String {
        // The first step starts the schedule's clock; the next minute's run is the hung one.
        self.step().await;
        self.world
            .s3
            .faults()
            .set(Rule::new(Fault::Hang).in_region(s3::PRIMARY_REGION))
            .await
            .unwrap();
        self.clock.advance(SignedDuration::from_secs(60));
        let report = self.step().await;
        assert_eq!(report.scheduled.len(), 1, "{report:?}");
        let hung = report.scheduled[0].clone();
        assert_eq!(report.running, std::slice::from_ref(&hung), "{report:?}");
        assert_eq!(self.state(&hung).await.as_deref(), Some(state::RUNNING));
        hung
    }

    /// An on-demand backup to the healthy secondary, as Backstop's cover backup is.
    async fn cover_backup(&self) -> String {
        let backup: PerconaXtraDBClusterBackup = serde_json::from_value(json!({
            "apiVersion": "pxc.percona.com/v1", "kind": "PerconaXtraDBClusterBackup",
            "metadata": {"name": "cover", "namespace": world::NAMESPACE},
            "spec": {"pxcCluster": world::CLUSTER, "storageName": world::SECONDARY_STORAGE},
        }))
        .unwrap();
        self.backups()
            .create(&PostParams::default(), &backup)
            .await
            .unwrap();
        "cover".to_owned()
    }
}

on_both_backends!(a_hung_backup_holds_the_lock_until_it_is_deleted);
async fn a_hung_backup_holds_the_lock_until_it_is_deleted(backend: Backend) {
    let lab = lab(backend, json!({"allowParallel": false})).await;
    let hung = lab.hung_scheduled_backup().await;
    let holder = lab.lock_holder().await.unwrap_or_default();
    assert!(holder.starts_with(&format!("{hung}-")), "{holder}");

    let cover = lab.cover_backup().await;
    let report = lab.step().await;
    assert!(report.waiting.contains(&cover), "{report:?}");
    // No operator deadline applies to a Running backup: hours later both are where they were.
    lab.clock.advance(SignedDuration::from_hours(6));
    let report = lab.step().await;
    assert!(report.waiting.contains(&cover), "{report:?}");
    assert!(report.running.contains(&hung), "{report:?}");
    assert_eq!(lab.state(&hung).await.as_deref(), Some(state::RUNNING));
    assert_eq!(lab.state(&cover).await.as_deref(), Some(""));

    // Deleting the hung backup stops its upload, removes its Job and frees the lock (the
    // release-lock finalizer); the waiting backup then runs.
    lab.backups()
        .delete(&hung, &DeleteParams::default())
        .await
        .unwrap();
    let report = lab.step().await;
    assert!(report.released.contains(&hung), "{report:?}");
    assert_eq!(lab.state(&hung).await, None);
    let jobs: Api<Job> = Api::namespaced(lab.world.client.clone(), world::NAMESPACE);
    assert!(
        jobs.get_opt(&backstop::pxc::backup_job_name(&hung))
            .await
            .unwrap()
            .is_none_or(|j| j.metadata.deletion_timestamp.is_some())
    );
    let report = lab.step().await;
    assert!(report.succeeded.contains(&cover), "{report:?}");
    // The cover backup released the lock; the schedule's next backup to the still hung
    // primary, waiting all along, took it.
    let holder = lab.lock_holder().await.unwrap_or_default();
    assert!(
        !holder.starts_with(&format!("{cover}-")) && !holder.starts_with(&format!("{hung}-")),
        "{holder}"
    );
    lab.world.shutdown().await;
}

on_both_backends!(deadlines_fail_a_waiting_backup_and_a_job_past_its_active_deadline);
async fn deadlines_fail_a_waiting_backup_and_a_job_past_its_active_deadline(backend: Backend) {
    let lab = lab(
        backend,
        json!({"allowParallel": false, "startingDeadlineSeconds": 300,
            "activeDeadlineSeconds": 3600}),
    )
    .await;
    let hung = lab.hung_scheduled_backup().await;
    let cover = lab.cover_backup().await;
    assert!(lab.step().await.waiting.contains(&cover));
    lab.clock.advance(SignedDuration::from_secs(300));
    let report = lab.step().await;
    assert!(report.failed.contains(&cover), "{report:?}");
    let failed = lab.backups().get(&cover).await.unwrap();
    let error = failed.status.and_then(|s| s.error).unwrap_or_default();
    assert!(error.contains("starting deadline"), "{error}");

    // The Job's own deadline is what ends a hung Running backup, and it frees the lock.
    lab.clock.advance(SignedDuration::from_secs(3600));
    let report = lab.step().await;
    assert!(report.failed.contains(&hung), "{report:?}");
    let error = lab
        .backups()
        .get(&hung)
        .await
        .unwrap()
        .status
        .and_then(|s| s.error)
        .unwrap_or_default();
    assert!(error.contains("activeDeadlineSeconds 3600s"), "{error}");
    let holder = lab.lock_holder().await.unwrap_or_default();
    assert!(!holder.starts_with(&format!("{hung}-")), "{holder}");
    lab.world.shutdown().await;
}

on_both_backends!(parallel_backups_take_no_lock_and_run_beside_a_hung_one);
async fn parallel_backups_take_no_lock_and_run_beside_a_hung_one(backend: Backend) {
    let lab = lab(backend, json!({})).await;
    let hung = lab.hung_scheduled_backup().await;
    assert_eq!(lab.lock_holder().await, None);
    let cover = lab.cover_backup().await;
    let report = lab.step().await;
    assert!(report.succeeded.contains(&cover), "{report:?}");
    assert!(report.running.contains(&hung), "{report:?}");
    lab.world.shutdown().await;
}
