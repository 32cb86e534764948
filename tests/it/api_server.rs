//! The playbooks' Kubernetes requests against an API server: the sandbox's simulator and a
//! real kube-apiserver, both in every run. With `BACKSTOP_TEST_KUBECONFIG` naming a
//! kubeconfig, the real-server test uses that cluster instead of starting one (it needs
//! cluster-admin there: it installs the operator's CRD and makes a namespace). The operator's CRD from
//! `../shared/fixtures/pxc/crd.yaml` is installed first (derived for the server's version),
//! everything happens in a fresh namespace that is deleted at the end, and the test plays the
//! operator's part (marking the test backup Succeeded), so no Percona operator is needed. S3
//! is the embedded one on 127.0.0.1: only Backstop talks to it, never the API server.

use std::sync::Arc;
use std::time::Duration;

use backstop::clock::SystemClock;
use backstop::config::{self, HumanDuration};
use backstop::pxc::PerconaXtraDBClusterBackup;
use backstop::responder::Engine;
use backstop::responder::cluster::{ClusterKey, cluster_api, read_journal};
use backstop::responder::intent::{INTENT_ANNOTATION, Intent};
use backstop::responder::journal::Phase;
use backstop::responder::{ResponderMetrics, alertmanager::AlertStatus};
use backstop_sandbox::backend::ApiServer;
use backstop_sandbox::crds::install_crd_file;
use backstop_sandbox::s3::{self, RegionConfig, S3Config};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

use crate::common;
use common::{Backend, on_both_backends};

const KEY: &str = "apiserveraccesskey";
const SECRET: &str = "apiserversecretkey0123456789";

/// Where the requests go.
enum Server {
    /// A server this test started (simulator or real), stopped at the end.
    Started(ApiServer),
    /// The cluster of `BACKSTOP_TEST_KUBECONFIG`, left as it was found.
    Own,
}

async fn connect(backend: Backend) -> (kube::Client, Server) {
    backstop::install_crypto_provider();
    let own = backend == Backend::Real && std::env::var_os("BACKSTOP_TEST_KUBECONFIG").is_some();
    match (!own).then_some(backend) {
        Some(backend) => {
            let server = ApiServer::start(backend).await.unwrap();
            let client = server.admin_client().await.unwrap();
            install_crd_file(&client, &common::operator_crd())
                .await
                .unwrap();
            (client, Server::Started(server))
        }
        None => {
            let path = std::env::var("BACKSTOP_TEST_KUBECONFIG").unwrap();
            let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
            let config = kube::Config::from_custom_kubeconfig(
                kubeconfig,
                &kube::config::KubeConfigOptions::default(),
            )
            .await
            .unwrap();
            let client = kube::Client::try_from(config).unwrap();
            install_crd_file(&client, &common::operator_crd())
                .await
                .unwrap();
            (client, Server::Own)
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

on_both_backends!(failover_and_revert_requests_work_against_the_api_server);
async fn failover_and_revert_requests_work_against_the_api_server(backend: Backend) {
    let (client, server) = connect(backend).await;
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

    // Leave one's own cluster as it was.
    if matches!(server, Server::Own) {
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
    if let Server::Started(server) = server {
        server.shutdown().await;
    }
}
