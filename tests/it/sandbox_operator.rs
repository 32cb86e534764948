//! The simulated Percona operator against the API simulator: schedules become backups with
//! the operator's names and labels, backups run as Job + Pod with a log, and retention keeps
//! the newest N successful backups per schedule. Time is a manual clock.

use std::sync::Arc;

use backstop::clock::ManualClock;
use backstop::pxc::{PerconaXtraDBCluster, PerconaXtraDBClusterBackup, labels};
use backstop_sandbox::crds::install_pxc_crds;
use backstop_sandbox::kube::{KubeSim, SimOptions};
use backstop_sandbox::operator::{OperatorOptions, SimOperator, ancestor};
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
    // Since 1.17 every backup carries the lock's finalizer; the data's follows the schedule.
    assert_eq!(
        backup.finalizers(),
        [
            "internal.percona.com/release-lock",
            "percona.com/delete-backup"
        ]
    );
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

mod with_s3 {
    use super::*;
    use backstop_sandbox::s3::{self, Fault, RegionConfig, Rule, S3Config};
    use k8s_openapi::api::core::v1::Secret;

    const KEY: &str = "sandboxaccesskey";
    const SECRET: &str = "sandboxsecretkey0123456789";

    struct S3World {
        w: World,
        s3: s3::S3Server,
        _dir: tempfile::TempDir,
    }

    async fn s3_world(count: i64) -> S3World {
        let dir = tempfile::tempdir().unwrap();
        let s3 = s3::start(S3Config {
            root: dir.path().to_owned(),
            access_key: KEY.into(),
            secret_key: SECRET.into(),
            regions: vec![RegionConfig {
                name: s3::PRIMARY_REGION.into(),
                buckets: vec!["pxc-backups".into()],
            }],
        })
        .await
        .unwrap();
        let endpoint = s3.endpoint(s3::PRIMARY_REGION).unwrap();
        let w = world(json!({"backup": {
            "storages": {"s3-us-west": {"type": "s3", "s3": {"bucket": "pxc-backups/prod",
                "region": s3::PRIMARY_REGION, "endpointUrl": endpoint, "forcePathStyle": true,
                "credentialsSecret": "s3-credentials"}}},
            "schedule": [{"name": "every-minute", "schedule": "* * * * *", "storageName": "s3-us-west",
                "retention": {"type": "count", "count": count, "deleteFromStorage": true}}],
        }}))
        .await;
        let secrets: Api<Secret> = Api::namespaced(w.client.clone(), "percona");
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "s3-credentials"},
            "stringData": {},
            "data": {
                "AWS_ACCESS_KEY_ID": base64(KEY),
                "AWS_SECRET_ACCESS_KEY": base64(SECRET),
            },
        }))
        .unwrap();
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
        S3World { w, s3, _dir: dir }
    }

    fn base64(s: &str) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    async fn run_one(sw: &S3World) -> (String, backstop::pxc::BackupStatus, String) {
        sw.w.operator.step().await.unwrap();
        sw.w.clock.advance(SignedDuration::from_secs(60));
        let report = sw.w.operator.step().await.unwrap();
        let name = report.scheduled[0].clone();
        let backups: Api<PerconaXtraDBClusterBackup> =
            Api::namespaced(sw.w.client.clone(), "percona");
        let status = backups.get(&name).await.unwrap().status.unwrap();
        let pods = Api::<Pod>::namespaced(sw.w.client.clone(), "percona");
        let pod = pods
            .list(&ListParams::default().labels(&format!("{}=xb-{name}", labels::JOB_NAME)))
            .await
            .unwrap()
            .items
            .remove(0);
        let log = pods
            .logs(&pod.name_any(), &Default::default())
            .await
            .unwrap();
        (name, status, log)
    }

    fn sdk(sw: &S3World) -> aws_sdk_s3::Client {
        backstop::s3::client::client(
            &backstop::s3::client::Endpoint {
                region: s3::PRIMARY_REGION.into(),
                endpoint_url: sw.s3.endpoint(s3::PRIMARY_REGION),
                force_path_style: true,
            },
            &backstop::s3::client::StaticCredentials {
                access_key_id: KEY.into(),
                secret_access_key: SECRET.into(),
            },
            Default::default(),
        )
    }

    async fn keys(sw: &S3World) -> Vec<String> {
        let out = sdk(sw)
            .list_objects_v2()
            .bucket("pxc-backups")
            .send()
            .await
            .unwrap();
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    }

    #[tokio::test]
    async fn a_reachable_bucket_gets_the_backup_and_the_backup_succeeds() {
        let sw = s3_world(3).await;
        let (_, status, log) = run_one(&sw).await;
        assert_eq!(status.state.as_deref(), Some("Succeeded"));
        let destination = status.destination.unwrap();
        assert!(
            destination.starts_with("s3://pxc-backups/prod/cluster1-2026-11-24-10:01:30-full"),
            "{destination}"
        );
        assert_eq!(status.s3.unwrap().bucket, "pxc-backups/prod");
        assert!(log.contains("completed OK!"), "{log}");
        let keys = keys(&sw).await;
        assert!(
            keys.iter()
                .any(|k| k == "prod/cluster1-2026-11-24-10:01:30-full/xtrabackup_checkpoints"),
            "{keys:?}"
        );
        sw.w.sim.shutdown().await;
        sw.s3.shutdown().await;
    }

    #[tokio::test]
    async fn each_s3_failure_fails_the_backup_with_a_telling_log() {
        let cases = [
            (
                Fault::AccessDenied,
                "S3 error message: Access Denied",
                "AccessDenied",
            ),
            (
                Fault::NoSuchBucket,
                "The specified bucket does not exist",
                "NoSuchBucket",
            ),
            (
                Fault::InvalidCredentials,
                "InvalidAccessKeyId",
                "InvalidAccessKeyId",
            ),
            (Fault::Refuse, "Connection refused", "connection refused"),
        ];
        for (fault, log_line, error) in cases {
            let sw = s3_world(3).await;
            sw.s3
                .faults()
                .set(Rule::new(fault).in_region(s3::PRIMARY_REGION))
                .await
                .unwrap();
            let (_, status, log) = run_one(&sw).await;
            assert_eq!(status.state.as_deref(), Some("Failed"), "{fault:?}");
            assert!(
                status.error.as_deref().unwrap().contains(error),
                "{fault:?}: {status:?}"
            );
            assert!(log.contains(log_line), "{fault:?}: {log}");
            assert!(
                log.contains("Upload failed: backup is incomplete."),
                "{log}"
            );
            sw.s3.faults().clear_all().await.unwrap();
            assert!(keys(&sw).await.is_empty(), "{fault:?}: nothing was written");
            sw.w.sim.shutdown().await;
            sw.s3.shutdown().await;
        }
    }

    #[tokio::test]
    async fn retention_purges_the_data_of_retired_backups_from_s3() {
        let sw = s3_world(1).await;
        run_one(&sw).await;
        sw.w.clock.advance(SignedDuration::from_secs(60));
        let report = sw.w.operator.step().await.unwrap();
        assert_eq!(report.retired.len(), 1, "{report:?}");
        assert_eq!(report.purged, report.retired);
        let keys = keys(&sw).await;
        assert!(
            keys.iter().all(|k| k.contains("10:02:30")),
            "only the newest remains: {keys:?}"
        );
        sw.w.sim.shutdown().await;
        sw.s3.shutdown().await;
    }

    #[tokio::test]
    async fn deletion_stalls_while_s3_is_down_and_completes_after() {
        let sw = s3_world(1).await;
        run_one(&sw).await;
        sw.s3
            .faults()
            .set(Rule::new(Fault::Refuse).in_region(s3::PRIMARY_REGION))
            .await
            .unwrap();
        sw.w.clock.advance(SignedDuration::from_secs(60));
        let report = sw.w.operator.step().await.unwrap();
        // The new backup failed (S3 down), so the old one is still the only success: kept.
        assert!(report.retired.is_empty(), "{report:?}");

        let backups: Api<PerconaXtraDBClusterBackup> =
            Api::namespaced(sw.w.client.clone(), "percona");
        let old = report.failed[0].clone();
        backups.delete(&old, &Default::default()).await.unwrap();
        let stalled = sw.w.operator.step().await.unwrap();
        assert!(!stalled.purged.contains(&old));
        assert!(
            backups
                .get(&old)
                .await
                .unwrap()
                .metadata
                .deletion_timestamp
                .is_some()
        );
        sw.s3.faults().clear_all().await.unwrap();
        let done = sw.w.operator.step().await.unwrap();
        assert!(done.purged.contains(&old), "{done:?}");
        sw.w.sim.shutdown().await;
        sw.s3.shutdown().await;
    }
}
