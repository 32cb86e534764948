//! The playbooks' Kubernetes requests against an API server: the sandbox's simulator by
//! default, or a real cluster when `BACKSTOP_TEST_REAL_CLUSTER=1` and `KUBECONFIG` are set.
//! On a real cluster the operator's CRD from `../shared/fixtures/pxc/crd.yaml` is applied
//! first (server-side apply), everything happens in a fresh namespace that is deleted at the
//! end, and the test plays the operator's part (marking the test backup Succeeded), so no
//! Percona operator is needed. S3 is the embedded one on 127.0.0.1: only Backstop talks to
//! it, never the API server.
#![cfg(feature = "sandbox")]

use std::sync::Arc;
use std::time::Duration;

use backstop::clock::SystemClock;
use backstop::config::{self, HumanDuration};
use backstop::pxc::PerconaXtraDBClusterBackup;
use backstop::responder::engine::{ClusterKey, Engine, cluster_api, read_journal};
use backstop::responder::intent::{INTENT_ANNOTATION, Intent};
use backstop::responder::journal::Phase;
use backstop::responder::{ResponderMetrics, alertmanager::AlertStatus};
use backstop::sandbox::kube::{KubeSim, SimOptions};
use backstop::sandbox::s3::{self, RegionConfig, S3Config};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

const KEY: &str = "apiserveraccesskey";
const SECRET: &str = "apiserversecretkey0123456789";

/// A client of the API server under test, and the simulator when it is the simulator.
async fn api_server() -> (kube::Client, Option<KubeSim>) {
    backstop::install_crypto_provider();
    if std::env::var("BACKSTOP_TEST_REAL_CLUSTER").as_deref() == Ok("1") {
        let client = kube::Client::try_default()
            .await
            .expect("BACKSTOP_TEST_REAL_CLUSTER=1 needs a reachable KUBECONFIG");
        apply_operator_crds(&client).await;
        (client, None)
    } else {
        let sim = KubeSim::start(SimOptions::default()).await.unwrap();
        let client = sim.admin_client().await.unwrap();
        backstop::sandbox::crds::install_pxc_crds(&client)
            .await
            .unwrap();
        (client, Some(sim))
    }
}

async fn apply_operator_crds(client: &kube::Client) {
    let text = std::fs::read_to_string("../shared/fixtures/pxc/crd.yaml").unwrap();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let value: Value = serde::Deserialize::deserialize(document).unwrap();
        if value["kind"] != "CustomResourceDefinition" {
            continue;
        }
        let name = value["metadata"]["name"].as_str().unwrap().to_owned();
        api.patch(
            &name,
            &PatchParams::apply("backstop-tests").force(),
            &Patch::Apply(value),
        )
        .await
        .unwrap();
        names.push(name);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for name in names {
        loop {
            let crd = api.get(&name).await.unwrap();
            let established = crd.status.and_then(|s| s.conditions).is_some_and(|c| {
                c.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
            if established {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "CRD {name} never established"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn intent(status: AlertStatus) -> Value {
    let at: jiff::Timestamp = "2026-11-24T03:10:30Z".parse().unwrap();
    let mut i = Intent::default();
    i.observe(
        "f",
        "S3BackupTargetUnavailable",
        at,
        AlertStatus::Firing,
        at,
    );
    if status == AlertStatus::Resolved {
        i.resolve_all(at);
    }
    json!({"metadata": {"annotations": {INTENT_ANNOTATION: i.render()}}})
}

#[tokio::test]
async fn failover_and_revert_requests_work_against_the_api_server() {
    let (client, sim) = api_server().await;
    let ns = format!(
        "backstop-it-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let s3 = s3::start(S3Config {
        root: dir.path().to_owned(),
        access_key: KEY.into(),
        secret_key: SECRET.into(),
        regions: vec![
            RegionConfig {
                name: s3::PRIMARY_REGION.into(),
                buckets: vec!["pxc-backups".into()],
            },
            RegionConfig {
                name: s3::SECONDARY_REGION.into(),
                buckets: vec!["pxc-backups-dr".into()],
            },
        ],
    })
    .await
    .unwrap();
    let primary = s3.endpoint(s3::PRIMARY_REGION).unwrap();
    let secondary = s3.endpoint(s3::SECONDARY_REGION).unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "s3-credentials"},
                "stringData": {"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let clusters = cluster_api(&client, &ns);
    let cluster: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "pxc.percona.com/v1", "kind": "PerconaXtraDBCluster",
        "metadata": {"name": "cluster1", "namespace": ns},
        "spec": {
            "crVersion": "1.20.0",
            "secretsName": "cluster1-secrets",
            "pxc": {"size": 3, "image": "percona/percona-xtradb-cluster:8.4"},
            "backup": {
                "image": "percona/percona-xtradb-cluster-operator:1.20.0-pxc8.4-backup",
                "pitr": {"enabled": true, "storageName": "s3-us-west", "timeBetweenUploads": 60},
                "storages": {"s3-us-west": {"type": "s3", "s3": {
                    "bucket": "pxc-backups/cluster1", "region": s3::PRIMARY_REGION,
                    "endpointUrl": primary, "forcePathStyle": true,
                    "credentialsSecret": "s3-credentials"}}},
                "schedule": [{"name": "daily", "schedule": "0 0 * * *", "storageName": "s3-us-west",
                    "retention": {"type": "count", "count": 7, "deleteFromStorage": true}}],
            },
        },
    }))
    .unwrap();
    clusters
        .create(&PostParams::default(), &cluster)
        .await
        .unwrap();
    let original = clusters.get("cluster1").await.unwrap().data["spec"]["backup"].clone();

    let mut config = config::load_str(&format!(
        "responder:\n  auth: {{allow_unauthenticated: true}}\n\
         kubernetes: {{leader_election: {{enabled: false}}}}\n\
         clusters:\n- namespace: {ns}\n  name: cluster1\n  failover:\n    storage: s3-us-west\n\
         \x20   secondary: {{bucket: pxc-backups-dr/cluster1, region: {}, endpoint_url: '{secondary}',\n\
         \x20     force_path_style: true, credentials_secret: s3-credentials}}\n",
        s3::SECONDARY_REGION
    ))
    .unwrap();
    config.probe.timeout = HumanDuration(Duration::from_secs(2));
    config.responder.rate_limits.per_cluster_cooldown = HumanDuration(Duration::ZERO);
    config.responder.revert.hold_down_probes = 1;
    let engine = Engine::new(
        client.clone(),
        Arc::new(config),
        ResponderMetrics::register(&mut Registry::default()),
        Arc::new(SystemClock),
    );
    let key = ClusterKey {
        namespace: ns.clone(),
        name: "cluster1".into(),
    };

    // Failover: the spec change and the journal in one conditional write.
    clusters
        .patch(
            "cluster1",
            &PatchParams::default(),
            &Patch::Merge(intent(AlertStatus::Firing)),
        )
        .await
        .unwrap();
    let outcome = engine.reconcile(&key).await.unwrap();
    assert_eq!(outcome.phase, Some(Phase::FailedOver), "{outcome:?}");
    let failed = clusters.get("cluster1").await.unwrap();
    let spec = &failed.data["spec"]["backup"];
    assert_eq!(spec["schedule"][0]["storageName"], "backstop-secondary");
    assert_eq!(spec["pitr"]["storageName"], "backstop-secondary");
    // The API server kept every field written (nothing pruned).
    assert_eq!(
        spec["storages"]["backstop-secondary"]["s3"]["endpointUrl"],
        secondary
    );
    // The cover backup, created by name.
    engine.reconcile(&key).await.unwrap();
    let journal = read_journal(&clusters.get("cluster1").await.unwrap())
        .unwrap()
        .unwrap();
    let backups: Api<PerconaXtraDBClusterBackup> = Api::namespaced(client.clone(), &ns);
    let cover = backups
        .get(journal.cover_backup.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(
        cover.spec.storage_name.as_deref(),
        Some("backstop-secondary")
    );

    // Revert, then the test backup, which the test completes as the operator would.
    clusters
        .patch(
            "cluster1",
            &PatchParams::default(),
            &Patch::Merge(intent(AlertStatus::Resolved)),
        )
        .await
        .unwrap();
    let outcome = engine.reconcile(&key).await.unwrap();
    assert_eq!(outcome.phase, Some(Phase::Verifying), "{outcome:?}");
    assert_eq!(
        clusters.get("cluster1").await.unwrap().data["spec"]["backup"],
        original
    );
    engine.reconcile(&key).await.unwrap();
    let journal = read_journal(&clusters.get("cluster1").await.unwrap())
        .unwrap()
        .unwrap();
    let test = journal.test_backup.unwrap();
    let created = backups.get(&test).await.unwrap();
    assert_eq!(created.spec.storage_name.as_deref(), Some("s3-us-west"));
    backups
        .patch_status(
            &test,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"state": "Succeeded"}})),
        )
        .await
        .unwrap();
    let outcome = engine.reconcile(&key).await.unwrap();
    assert_eq!(outcome.phase, Some(Phase::Reverted), "{outcome:?}");
    let listed = backups
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=backstop"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 2, "one cover and one test backup");

    // Leave a real cluster as it was.
    if sim.is_none() {
        for b in &listed.items {
            let name = b.metadata.name.clone().unwrap();
            let _ = backups.delete(&name, &DeleteParams::default()).await;
        }
        namespaces
            .delete(&ns, &DeleteParams::default())
            .await
            .unwrap();
    }
    s3.shutdown().await;
    if let Some(sim) = sim {
        sim.shutdown().await;
    }
}
