//! The simulated Percona operator against the API simulator: schedules become backups with
//! the operator's names and labels, backups run as Job + Pod with a log, and retention keeps
//! the newest N successful backups per schedule. Time is a manual clock.
#![cfg(feature = "sandbox")]

use std::sync::Arc;

use backstop::clock::ManualClock;
use backstop::pxc::{PerconaXtraDBCluster, PerconaXtraDBClusterBackup, labels};
use backstop::sandbox::crds::install_pxc_crds;
use backstop::sandbox::kube::{KubeSim, SimOptions};
use backstop::sandbox::operator::{OperatorOptions, SimOperator, ancestor};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod};
use kube::ResourceExt as _;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

struct World {
    sim: KubeSim,
    client: kube::Client,
    clock: ManualClock,
    operator: SimOperator,
}

async fn world(spec: serde_json::Value) -> World {
    let sim = KubeSim::start(SimOptions::default()).await.unwrap();
    let client = sim.admin_client().await.unwrap();
    install_pxc_crds(&client).await.unwrap();
    let ns: Api<Namespace> = Api::all(client.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "percona"}})).unwrap(),
    )
    .await
    .unwrap();
    let clusters: Api<PerconaXtraDBCluster> = Api::namespaced(client.clone(), "percona");
    let cluster: PerconaXtraDBCluster = serde_json::from_value(json!({
        "apiVersion": "pxc.percona.com/v1", "kind": "PerconaXtraDBCluster",
        "metadata": {"name": "cluster1", "namespace": "percona"},
        "spec": spec,
    }))
    .unwrap();
    clusters
        .create(&PostParams::default(), &cluster)
        .await
        .unwrap();
    let clock = ManualClock::new("2026-11-24T10:00:30Z".parse::<Timestamp>().unwrap());
    let operator = SimOperator::new(
        client.clone(),
        Arc::new(clock.clone()),
        OperatorOptions::default(),
    );
    World {
        sim,
        client,
        clock,
        operator,
    }
}

fn fs_spec(count: i64) -> serde_json::Value {
    json!({"backup": {
        "storages": {"fs-pvc": {"type": "filesystem", "volume": {"persistentVolumeClaim": {
            "storageClassName": "gp3", "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "10Gi"}}}}}},
        "schedule": [{"name": "every-minute", "schedule": "* * * * *", "storageName": "fs-pvc",
            "retention": {"type": "count", "count": count, "deleteFromStorage": true}}],
    }})
}

#[tokio::test]
async fn a_due_schedule_creates_a_backup_named_and_labelled_like_the_operators() {
    let w = world(fs_spec(3)).await;
    let first = w.operator.step().await.unwrap();
    assert!(
        first.scheduled.is_empty(),
        "nothing is due before the first minute passes"
    );

    w.clock.advance(SignedDuration::from_secs(60));
    let report = w.operator.step().await.unwrap();
    assert_eq!(report.scheduled.len(), 1, "{report:?}");
    let name = &report.scheduled[0];
    assert!(
        name.starts_with("cron-cluster1-fs-pvc-2026112410"),
        "{name}"
    );

    let backups: Api<PerconaXtraDBClusterBackup> = Api::namespaced(w.client.clone(), "percona");
    let backup = backups.get(name).await.unwrap();
    let l = backup.labels();
    assert_eq!(l[labels::BACKUP_TYPE], "cron");
    assert_eq!(l[labels::CLUSTER], "cluster1");
    assert_eq!(
        l[labels::BACKUP_ANCESTOR],
        ancestor("percona", "cluster1", "every-minute")
    );
    assert_eq!(backup.finalizers(), ["percona.com/delete-backup"]);
    assert_eq!(backup.spec.storage_name.as_deref(), Some("fs-pvc"));
    w.sim.shutdown().await;
}

#[tokio::test]
async fn a_filesystem_backup_runs_as_a_job_with_a_pvc_from_the_template() {
    let w = world(fs_spec(3)).await;
    w.operator.step().await.unwrap();
    w.clock.advance(SignedDuration::from_secs(60));
    let report = w.operator.step().await.unwrap();
    assert_eq!(report.succeeded, report.scheduled);
    let name = &report.succeeded[0];

    let backups: Api<PerconaXtraDBClusterBackup> = Api::namespaced(w.client.clone(), "percona");
    let status = backups.get(name).await.unwrap().status.unwrap();
    assert_eq!(status.state.as_deref(), Some("Succeeded"));
    let job_name = format!("xb-{name}");
    assert_eq!(status.destination, Some(format!("pvc/{job_name}")));
    assert!(status.completed.is_some());

    let pvc = Api::<PersistentVolumeClaim>::namespaced(w.client.clone(), "percona")
        .get(&job_name)
        .await
        .unwrap();
    assert_eq!(pvc.spec.unwrap().storage_class_name.as_deref(), Some("gp3"));
    let job = Api::<Job>::namespaced(w.client.clone(), "percona")
        .get(&job_name)
        .await
        .unwrap();
    assert_eq!(job.labels()[labels::BACKUP_NAME], *name);
    assert_eq!(job.status.unwrap().succeeded, Some(1));
    let pods = Api::<Pod>::namespaced(w.client.clone(), "percona")
        .list(&ListParams::default().labels(&format!("{}={job_name}", labels::JOB_NAME)))
        .await
        .unwrap();
    assert_eq!(pods.items.len(), 1);
    assert_eq!(
        pods.items[0].status.as_ref().unwrap().phase.as_deref(),
        Some("Succeeded")
    );
    w.sim.shutdown().await;
}

#[tokio::test]
async fn a_backup_to_a_missing_storage_fails_with_an_error() {
    let w = world(fs_spec(3)).await;
    let backups: Api<PerconaXtraDBClusterBackup> = Api::namespaced(w.client.clone(), "percona");
    let manual: PerconaXtraDBClusterBackup = serde_json::from_value(json!({
        "apiVersion": "pxc.percona.com/v1", "kind": "PerconaXtraDBClusterBackup",
        "metadata": {"name": "manual", "namespace": "percona"},
        "spec": {"pxcCluster": "cluster1", "storageName": "nowhere"},
    }))
    .unwrap();
    backups
        .create(&PostParams::default(), &manual)
        .await
        .unwrap();
    let report = w.operator.step().await.unwrap();
    assert_eq!(report.failed, ["manual"]);
    let status = backups.get("manual").await.unwrap().status.unwrap();
    assert_eq!(status.state.as_deref(), Some("Failed"));
    assert!(status.error.unwrap().contains("nowhere"));
    w.sim.shutdown().await;
}

#[tokio::test]
async fn retention_keeps_the_newest_successful_backups_of_each_schedule() {
    let w = world(fs_spec(2)).await;
    w.operator.step().await.unwrap();
    let mut made = Vec::new();
    for _ in 0..4 {
        w.clock.advance(SignedDuration::from_secs(60));
        made.extend(w.operator.step().await.unwrap().scheduled);
    }
    assert_eq!(made.len(), 4);
    let backups: Api<PerconaXtraDBClusterBackup> = Api::namespaced(w.client.clone(), "percona");
    let mut left: Vec<String> = backups
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|b| b.name_any())
        .collect();
    left.sort();
    let mut newest = made[2..].to_vec();
    newest.sort();
    assert_eq!(left, newest, "the two oldest were retired and purged");
    w.sim.shutdown().await;
}
