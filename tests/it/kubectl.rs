//! `kubectl` (the real binary) against the simulator: discovery, short names and the PXC
//! custom resources all work through a kubeconfig the simulator writes.

use backstop_sandbox::crds::install_pxc_crds;
use backstop_sandbox::kube::{KubeSim, SimOptions};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::json;

async fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .await
        .expect("kubectl is installed (scripts/test.sh installs it)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("pxc.percona.com", "v1", kind),
        plural,
    )
}

#[tokio::test]
async fn kubectl_lists_pxc_clusters_and_backups_by_short_name() {
    let sim = KubeSim::start(SimOptions::default()).await.unwrap();
    let client = sim.admin_client().await.unwrap();
    install_pxc_crds(&client).await.unwrap();
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "percona"}})).unwrap(),
    )
    .await
    .unwrap();
    let cluster_rt = resource("PerconaXtraDBCluster", "perconaxtradbclusters");
    let clusters: Api<DynamicObject> = Api::namespaced_with(client.clone(), "percona", &cluster_rt);
    let mut cluster = DynamicObject::new("cluster1", &cluster_rt);
    cluster.data = json!({"spec": {"crVersion": "1.20.0"}});
    clusters
        .create(&PostParams::default(), &cluster)
        .await
        .unwrap();
    let backup_rt = resource("PerconaXtraDBClusterBackup", "perconaxtradbclusterbackups");
    let backups: Api<DynamicObject> = Api::namespaced_with(client, "percona", &backup_rt);
    let mut backup = DynamicObject::new("backup1", &backup_rt);
    backup.data = json!({"spec": {"pxcCluster": "cluster1", "storageName": "s3-us-west"}});
    backups
        .create(&PostParams::default(), &backup)
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig, sim.admin_token())
        .unwrap();

    let (ok, out, err) = kubectl(&kubeconfig, &["get", "pxc,pxc-backup", "-A", "-o", "name"]).await;
    assert!(ok, "kubectl failed: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "perconaxtradbcluster.pxc.percona.com/cluster1",
            "perconaxtradbclusterbackup.pxc.percona.com/backup1",
        ]
    );

    let (ok, out, err) = kubectl(
        &kubeconfig,
        &[
            "get",
            "pxc-backup",
            "-n",
            "percona",
            "backup1",
            "-o",
            "jsonpath={.spec.pxcCluster}",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(out, "cluster1");

    // Server-side printing: the CRD's printer columns, as on a real cluster.
    let (ok, out, err) = kubectl(&kubeconfig, &["get", "pxc-backup", "-n", "percona"]).await;
    assert!(ok, "{err}");
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "CLUSTER",
            "STORAGE",
            "DESTINATION",
            "STATUS",
            "COMPLETED",
            "AGE"
        ]
    );
    assert!(
        out.lines()
            .nth(1)
            .unwrap_or_default()
            .starts_with("backup1"),
        "{out}"
    );

    // A kubeconfig with a wrong token is refused, as by a real server.
    let bad = dir.path().join("bad-kubeconfig");
    sim.write_kubeconfig(&bad, "wrong").unwrap();
    let (ok, _, err) = kubectl(&bad, &["get", "pxc", "-A"]).await;
    assert!(!ok);
    assert!(
        err.contains("Unauthorized") || err.contains("credentials"),
        "{err}"
    );
    sim.shutdown().await;
}
