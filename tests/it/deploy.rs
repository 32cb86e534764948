//! The kustomize manifests as a cluster would receive them: `kubectl kustomize` renders the
//! expected objects, the Deployment runs the shipped configuration (valid per
//! `backstop validate-config`) with the webhook token where that configuration reads it, and,
//! applied to the sandbox's Kubernetes API simulator, the `backstop` ServiceAccount may make
//! every request Backstop makes and is refused (403) a few it must never make. Checked for
//! the all-namespaces base (`deploy/`), the per-namespace variant (`deploy/namespaced/`) and
//! the Secrets-by-name component. Kinds the simulator does not serve (prometheus-operator's,
//! PodDisruptionBudget) are skipped, and the test names them. Needs `kubectl`.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::path::Path;
use std::process::Command;

use backstop::pxc::{PerconaXtraDBCluster, PerconaXtraDBClusterBackup};
use backstop_sandbox::backend::ApiServer;
use backstop_sandbox::crds::install_pxc_crds;
use backstop_sandbox::kube::api::POD_LOG_ANNOTATION;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, Secret};
use kube::api::{
    Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams, WatchParams,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::common;
use common::{Backend, on_both_backends};

use common::deploy::{apply, deploy_dir, id, kustomize};

/// Kinds in the manifests that the simulator does not serve: applied to a real cluster with
/// prometheus-operator's CRDs, skipped here.
const NOT_SERVED_BY_THE_SIMULATOR: [&str; 4] = [
    "AlertmanagerConfig/backstop",
    "PodDisruptionBudget/backstop",
    "PrometheusRule/backstop",
    "ServiceMonitor/backstop",
];

/// Backstop's namespace in the manifests.
const NS: &str = "backstop";
/// A namespace with a PXC cluster.
const DB: &str = "percona";
/// A namespace the per-namespace variant does not watch.
const OTHER: &str = "other";

/// `kustomize` of a throw-away overlay: the per-namespace variant with the Secrets-by-name
/// component. kustomize takes only relative paths, so the overlay climbs from its own
/// directory to the root and back down.
fn kustomize_restricted_secrets() -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let here = dir.path().canonicalize().unwrap();
    let up = "../".repeat(here.components().count() - 1);
    let deploy = deploy_dir("").canonicalize().unwrap();
    let deploy = deploy.strip_prefix("/").unwrap().display().to_string();
    std::fs::write(
        here.join("kustomization.yaml"),
        format!(
            "resources: [{up}{deploy}/namespaced]\ncomponents: [{up}{deploy}/components/restrict-secrets]\n"
        ),
    )
    .unwrap();
    kustomize(&here)
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name}"))
}

/// The generated ConfigMap (its name ends in a content hash).
fn config_map(objects: &[Value]) -> &Value {
    objects
        .iter()
        .find(|o| {
            o["kind"] == "ConfigMap"
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("backstop-config-"))
        })
        .expect("ConfigMap backstop-config-<hash>")
}

/// Every (apiGroup, resource, verb, resourceNames) a role's rules grant.
fn grants(role: &Value) -> BTreeSet<(String, String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        let list = |field: &str| -> Vec<String> {
            rule[field]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        let names = list("resourceNames").join(",");
        for group in list("apiGroups") {
            for resource in list("resources") {
                for verb in list("verbs") {
                    out.insert((group.clone(), resource.clone(), verb, names.clone()));
                }
            }
        }
    }
    out
}

#[test]
fn the_base_renders_the_expected_objects() {
    let objects = kustomize(&deploy_dir(""));
    let ids: BTreeSet<String> = objects
        .iter()
        .map(|o| {
            let id = id(o);
            if id.starts_with("ConfigMap/backstop-config-") {
                "ConfigMap/backstop-config-<hash>".to_owned()
            } else {
                id
            }
        })
        .collect();
    let expected: BTreeSet<String> = [
        "Namespace/backstop",
        "ServiceAccount/backstop",
        "ClusterRole/backstop",
        "ClusterRoleBinding/backstop",
        "Role/backstop-leader-election",
        "RoleBinding/backstop-leader-election",
        "ConfigMap/backstop-config-<hash>",
        "Deployment/backstop",
        "Service/backstop",
        "PodDisruptionBudget/backstop",
        "ServiceMonitor/backstop",
        "PrometheusRule/backstop",
        "AlertmanagerConfig/backstop",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(ids, expected);
    for object in &objects {
        let cluster_scoped = ["Namespace", "ClusterRole", "ClusterRoleBinding"]
            .contains(&object["kind"].as_str().unwrap());
        let namespace = object["metadata"]["namespace"].as_str();
        if cluster_scoped {
            assert_eq!(namespace, None, "{}", id(object));
        } else {
            assert_eq!(namespace, Some(NS), "{}", id(object));
        }
    }
    let rule: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("alerts/prometheusrule.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        find(&objects, "PrometheusRule", "backstop")["spec"],
        rule["spec"],
        "the installed PrometheusRule is alerts/prometheusrule.yaml"
    );
}

/// Runs `backstop validate-config` on `text`.
fn assert_valid_config(text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_backstop"))
        .arg("validate-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the rendered configuration is invalid:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_deployment_runs_the_shipped_configuration_hardened() {
    let objects = kustomize(&deploy_dir(""));
    let config_map = config_map(&objects);
    let config_text = config_map["data"]["config.yaml"].as_str().unwrap();
    assert_eq!(
        config_text,
        std::fs::read_to_string(deploy_dir("config.example.yaml")).unwrap(),
        "the base ships the annotated example"
    );
    assert_valid_config(config_text);
    let config: Value = serde_yaml_ng::from_str(config_text).unwrap();

    let deployment = find(&objects, "Deployment", "backstop");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 2);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "backstop");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(c["image"], "ghcr.io/backstop-dev/backstop:latest");
    assert_eq!(
        c["args"],
        json!(["run", "--config", "/etc/backstop/config.yaml"])
    );
    for (name, field) in [
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_NAME", "metadata.name"),
    ] {
        let env = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no env {name}"));
        assert_eq!(env["valueFrom"]["fieldRef"]["fieldPath"], field);
    }
    assert_eq!(
        c["ports"],
        json!([{"name": "http", "containerPort": 10317, "protocol": "TCP"}])
    );
    assert_eq!(
        config["server"]["listen"], "0.0.0.0:10317",
        "the container port is the configuration's"
    );
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    for field in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                c["resources"][field][resource].is_string(),
                "resources.{field}.{resource}"
            );
        }
    }

    // The files the configuration names are where the volumes put them.
    let volume = |name: &str| {
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
            .clone()
    };
    let mount = |name: &str| {
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no mount {name}"))
            .clone()
    };
    assert_eq!(
        volume("config")["configMap"]["name"],
        config_map["metadata"]["name"]
    );
    assert_eq!(mount("config")["mountPath"], "/etc/backstop/config.yaml");
    assert_eq!(mount("config")["subPath"], "config.yaml");
    let webhook = volume("webhook");
    assert_eq!(webhook["secret"]["secretName"], "backstop-webhook");
    assert_eq!(
        webhook["secret"]["items"],
        json!([{"key": "token", "path": "token"}])
    );
    let token_file = format!("{}/token", mount("webhook")["mountPath"].as_str().unwrap());
    assert_eq!(
        config["responder"]["auth"]["bearer_token_file"], token_file,
        "Backstop reads the webhook token where the Secret is mounted"
    );

    let service = find(&objects, "Service", "backstop");
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "http", "port": 10317, "targetPort": "http", "protocol": "TCP"}])
    );
    assert_eq!(
        service["spec"]["selector"],
        spec["template"]["metadata"]["labels"]
    );
    let monitor = find(&objects, "ServiceMonitor", "backstop");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        json!({"app.kubernetes.io/name": "backstop"})
    );
    assert_eq!(
        service["metadata"]["labels"]["app.kubernetes.io/name"],
        "backstop"
    );
    let am = find(&objects, "AlertmanagerConfig", "backstop");
    assert_eq!(
        am["spec"]["receivers"][0]["webhookConfigs"][0]["url"],
        format!(
            "http://backstop.{NS}.svc:10317{}",
            config["server"]["webhook_path"].as_str().unwrap()
        )
    );
}

#[test]
fn the_namespaced_variant_grants_the_cluster_roles_rules_per_namespace() {
    let base = kustomize(&deploy_dir(""));
    let namespaced = kustomize(&deploy_dir("namespaced"));
    for kind in ["ClusterRole", "ClusterRoleBinding"] {
        assert!(
            !namespaced.iter().any(|o| o["kind"] == kind),
            "deploy/namespaced has a {kind}"
        );
    }
    let role = namespaced
        .iter()
        .find(|o| o["kind"] == "Role" && o["metadata"]["namespace"] == DB)
        .expect("a Role in the watched namespace");
    assert_eq!(
        grants(role),
        grants(find(&base, "ClusterRole", "backstop")),
        "deploy/namespaced/role.yaml and deploy/rbac.yaml grant the same"
    );
    let config_text = config_map(&namespaced)["data"]["config.yaml"]
        .as_str()
        .unwrap();
    assert_valid_config(config_text);
    let config: Value = serde_yaml_ng::from_str(config_text).unwrap();
    assert_eq!(config["kubernetes"]["namespaces"], json!([DB]));
}

/// Applies `objects` as the administrator, one at a time; returns the ones the simulator
/// does not serve.
fn object<T: DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).unwrap()
}

const CLUSTER: &str = "cluster1";
const BACKUP: &str = "cron-cluster1-s3-us-west-2026112412000-1a2b3";
const JOB: &str = "xb-cron-cluster1-s3-us-west-2026112412000-1a2b3";
const POD: &str = "xb-cron-cluster1-s3-us-west-2026112412000-1a2b3-x7k2p";
const OPERATOR_LEASE: &str = "pxc-cluster1-backup-lock";

/// The objects Backstop's requests are about, created by the administrator in `namespace`
/// (which exists):
/// a cluster, one of its backups, the backup's Job and pod, credential Secrets and the
/// operator's Lease.
async fn seed(admin: &kube::Client, namespace: &str) {
    let pp = PostParams::default();
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), namespace);
    for name in ["s3-credentials", "cluster1-backup-s3-us-west"] {
        secrets
            .create(
                &pp,
                &object(json!({"metadata": {"name": name},
                    "stringData": {"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "secret"}})),
            )
            .await
            .unwrap();
    }
    let clusters: Api<PerconaXtraDBCluster> = Api::namespaced(admin.clone(), namespace);
    clusters
        .create(
            &pp,
            &object(json!({
                "apiVersion": "pxc.percona.com/v1", "kind": "PerconaXtraDBCluster",
                "metadata": {"name": CLUSTER},
                "spec": {"crVersion": "1.20.0", "backup": {
                    "storages": {"s3-us-west": {"type": "s3", "s3": {
                        "bucket": "pxc-backups/cluster1", "region": "us-west-2",
                        "credentialsSecret": "cluster1-backup-s3-us-west"}}},
                    "schedule": [{"name": "daily", "schedule": "0 0 * * *", "storageName": "s3-us-west",
                        "retention": {"type": "count", "count": 7, "deleteFromStorage": true}}]}},
            })),
        )
        .await
        .unwrap();
    let backups: Api<PerconaXtraDBClusterBackup> = Api::namespaced(admin.clone(), namespace);
    backups
        .create(
            &pp,
            &object(json!({
                "apiVersion": "pxc.percona.com/v1", "kind": "PerconaXtraDBClusterBackup",
                "metadata": {"name": BACKUP, "labels": {"percona.com/cluster": CLUSTER}},
                "spec": {"pxcCluster": CLUSTER, "storageName": "s3-us-west"},
            })),
        )
        .await
        .unwrap();
    let jobs: Api<Job> = Api::namespaced(admin.clone(), namespace);
    jobs.create(
        &pp,
        &object(json!({
            "metadata": {"name": JOB, "labels": {"percona.com/backup-name": BACKUP}},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "xtrabackup", "image": "percona/percona-xtradb-cluster-operator:1.20.0-pxc8.4-backup"}]}}},
        })),
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(admin.clone(), namespace);
    pods.create(
        &pp,
        &object(json!({
            "metadata": {"name": POD, "labels": {"batch.kubernetes.io/job-name": JOB},
                "annotations": {POD_LOG_ANNOTATION: "xbcloud: upload failed\n"}},
            "spec": {"containers": [{"name": "xtrabackup", "image": "x"}]},
        })),
    )
    .await
    .unwrap();
    let leases: Api<Lease> = Api::namespaced(admin.clone(), namespace);
    leases
        .create(
            &pp,
            &object(json!({"metadata": {"name": OPERATOR_LEASE}, "spec": {"holderIdentity": "operator"}})),
        )
        .await
        .unwrap();
}

/// Starts a simulator with the PXC CRDs, applies `objects` and seeds the watched namespace
/// and one Backstop does not watch; returns it with a client for the `backstop`
/// ServiceAccount, and the objects it skipped.
async fn cluster_with(
    backend: Backend,
    objects: &[Value],
) -> (ApiServer, kube::Client, BTreeSet<String>) {
    let sim = ApiServer::start(backend).await.unwrap();
    let admin = sim.admin_client().await.unwrap();
    install_pxc_crds(&admin).await.unwrap();
    // The databases' namespaces exist before Backstop is installed (the namespaced variant's
    // Roles live in them).
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    for namespace in [DB, OTHER] {
        namespaces
            .create(
                &PostParams::default(),
                &object(json!({"metadata": {"name": namespace}})),
            )
            .await
            .unwrap();
    }
    sim.wait_namespace_ready(&admin, DB).await.unwrap();
    sim.wait_namespace_ready(&admin, OTHER).await.unwrap();
    let skipped = apply(&admin, objects).await;
    seed(&admin, DB).await;
    seed(&admin, OTHER).await;
    let token = sim.service_account_token(NS, "backstop").await.unwrap();
    let client = sim.client_for(&token).await.unwrap();
    (sim, client, skipped)
}

/// Outcomes of requests as the ServiceAccount, checked all at once so that a failure lists
/// every wrong permission.
#[derive(Default)]
struct Matrix {
    wrong: Vec<String>,
    checked: usize,
}

impl Matrix {
    /// A request Backstop makes: must succeed.
    fn allowed<T>(&mut self, what: &str, result: Result<T, kube::Error>) {
        self.checked += 1;
        if let Err(e) = result {
            self.wrong
                .push(format!("{what}: expected allowed, got {e}"));
        }
    }

    /// A request Backstop must not be able to make: must be refused with 403.
    fn forbidden<T>(&mut self, what: &str, result: Result<T, kube::Error>) {
        self.checked += 1;
        match result {
            Err(kube::Error::Api(status)) if status.code == 403 => {}
            Err(e) => self.wrong.push(format!("{what}: expected 403, got {e}")),
            Ok(_) => self
                .wrong
                .push(format!("{what}: expected 403, but it succeeded")),
        }
    }

    fn assert_all_as_expected(self) {
        assert!(
            self.wrong.is_empty(),
            "{} of {} permission checks wrong:\n{}",
            self.wrong.len(),
            self.checked,
            self.wrong.join("\n")
        );
    }
}

/// A watch is allowed when its stream opens.
async fn watch<K>(api: &Api<K>) -> Result<(), kube::Error>
where
    K: Clone + DeserializeOwned + Debug,
{
    api.watch(&WatchParams::default().timeout(1), "0")
        .await
        .map(drop)
}

/// Every request Backstop makes in `namespace`. Lists and watches are scoped like Backstop's:
/// all namespaces (`Api::all`) when `all`, else the namespace.
async fn backstops_requests(
    backend: Backend,
    m: &mut Matrix,
    client: &kube::Client,
    namespace: &str,
    all: bool,
) {
    let scoped = |ns: &str| -> (
        Api<PerconaXtraDBCluster>,
        Api<PerconaXtraDBClusterBackup>,
        Api<Job>,
    ) {
        if all {
            (
                Api::all(client.clone()),
                Api::all(client.clone()),
                Api::all(client.clone()),
            )
        } else {
            (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            )
        }
    };
    let (clusters_w, backups_w, jobs_w) = scoped(namespace);
    let lp = ListParams::default();
    m.allowed("list clusters", clusters_w.list(&lp).await);
    m.allowed("watch clusters", watch(&clusters_w).await);
    m.allowed("list backups", backups_w.list(&lp).await);
    m.allowed("watch backups", watch(&backups_w).await);
    m.allowed("list jobs", jobs_w.list(&lp).await);
    m.allowed("watch jobs", watch(&jobs_w).await);

    let clusters: Api<PerconaXtraDBCluster> = Api::namespaced(client.clone(), namespace);
    let pp = PatchParams::default();
    m.allowed("get a cluster", clusters.get(CLUSTER).await);
    m.allowed(
        "patch a cluster's annotations (intent, journal)",
        clusters
            .patch(
                CLUSTER,
                &pp,
                &Patch::Merge(json!({"metadata": {"annotations": {"backstop.percona.com/intent": "failover"}}})),
            )
            .await,
    );
    m.allowed(
        "patch a cluster's spec.backup",
        clusters
            .patch(
                CLUSTER,
                &pp,
                &Patch::Merge(json!({"spec": {"backup": {"schedule": [{"name": "daily",
                    "schedule": "0 0 * * *", "storageName": "backstop-secondary"}]}}})),
            )
            .await,
    );

    // Failover and revert: the spec change and the journal in one conditional replace.
    let raw = backstop::responder::cluster::cluster_api(client, namespace);
    match raw.get(CLUSTER).await {
        Ok(current) => m.allowed(
            "replace a cluster (failover/revert write)",
            raw.replace(CLUSTER, &PostParams::default(), &current).await,
        ),
        Err(e) => m.allowed("get a cluster as raw JSON", Err::<(), _>(e)),
    }

    let backups: Api<PerconaXtraDBClusterBackup> = Api::namespaced(client.clone(), namespace);
    m.allowed("get a backup", backups.get(BACKUP).await);
    m.allowed(
        "claim a backup (observed annotation)",
        backups
            .patch(
                BACKUP,
                &pp,
                &Patch::Merge(
                    json!({"metadata": {"annotations": {"backstop.percona.com/observed": "failed"}}}),
                ),
            )
            .await,
    );
    m.allowed(
        "create a test backup",
        backups
            .create(
                &PostParams::default(),
                &object(json!({
                    "apiVersion": "pxc.percona.com/v1", "kind": "PerconaXtraDBClusterBackup",
                    "metadata": {"generateName": "backstop-test-"},
                    "spec": {"pxcCluster": CLUSTER, "storageName": "s3-us-west"},
                })),
            )
            .await,
    );

    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    m.allowed(
        "get the storage's credentials Secret",
        secrets.get("cluster1-backup-s3-us-west").await,
    );

    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    m.allowed(
        "list the backup Job's pods",
        pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={JOB}")))
            .await,
    );
    let log = pods
        .logs(
            POD,
            &LogParams {
                tail_lines: Some(100),
                ..LogParams::default()
            },
        )
        .await;
    // A real API server has no kubelet behind it: it answers the allowed request with an
    // empty log. The simulator serves the log the seed recorded.
    if let Ok(text) = &log
        && !(backend == Backend::Real && text.is_empty())
    {
        assert_eq!(text, "xbcloud: upload failed\n");
    }
    m.allowed("read a pod's log", log);

    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let event = events
        .create(
            &PostParams::default(),
            &object(json!({
                "metadata": {"generateName": format!("{BACKUP}.")},
                "involvedObject": {"apiVersion": "pxc.percona.com/v1",
                    "kind": "PerconaXtraDBClusterBackup", "name": BACKUP, "namespace": namespace},
                "reason": "BackupFailed", "type": "Warning", "message": "cause=s3_access_denied",
                "reportingComponent": "backstop", "count": 1,
            })),
        )
        .await;
    if let Ok(created) = &event {
        // Every Event is a new object: Backstop never patches one (tests/it/least_privilege.rs).
        let name = created.metadata.name.clone().unwrap();
        m.forbidden(
            "patch an Event",
            events
                .patch(&name, &pp, &Patch::Merge(json!({"count": 2})))
                .await,
        );
    }
    m.allowed("create an Event", event);
    // Pods are found by label and Jobs watched; neither is read by name.
    m.forbidden("get a pod", pods.get(POD).await);
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    m.forbidden("get a Job", jobs.get(JOB).await);
}

/// The leader-election Lease in Backstop's namespace: create, get, update (renew).
async fn leader_election(m: &mut Matrix, client: &kube::Client) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    m.allowed(
        "create the leader Lease",
        leases
            .create(
                &PostParams::default(),
                &object(json!({"metadata": {"name": "backstop-leader"},
                    "spec": {"holderIdentity": "backstop-0", "leaseDurationSeconds": 15}})),
            )
            .await,
    );
    let got = leases.get("backstop-leader").await;
    if let Ok(lease) = &got {
        let mut renewed = lease.clone();
        renewed.spec.as_mut().unwrap().holder_identity = Some("backstop-1".into());
        m.allowed(
            "update (renew, acquire) the leader Lease",
            leases
                .replace("backstop-leader", &PostParams::default(), &renewed)
                .await,
        );
    }
    m.allowed("get the leader Lease", got);
}

/// What Backstop must never be able to do, wherever it runs.
async fn never(m: &mut Matrix, client: &kube::Client) {
    let clusters: Api<PerconaXtraDBCluster> = Api::namespaced(client.clone(), DB);
    m.forbidden(
        "delete a cluster",
        clusters.delete(CLUSTER, &DeleteParams::default()).await,
    );
    let backups: Api<PerconaXtraDBClusterBackup> = Api::namespaced(client.clone(), DB);
    m.forbidden(
        "delete a backup",
        backups.delete(BACKUP, &DeleteParams::default()).await,
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), DB);
    m.forbidden("list Secrets", secrets.list(&ListParams::default()).await);
    m.forbidden("watch Secrets", watch(&secrets).await);
    let all_secrets: Api<Secret> = Api::all(client.clone());
    m.forbidden(
        "list Secrets in all namespaces",
        all_secrets.list(&ListParams::default()).await,
    );
    m.forbidden(
        "patch a Secret",
        secrets
            .patch(
                "s3-credentials",
                &PatchParams::default(),
                &Patch::Merge(json!({"stringData": {"AWS_ACCESS_KEY_ID": "x"}})),
            )
            .await,
    );
    let leases: Api<Lease> = Api::namespaced(client.clone(), DB);
    m.forbidden(
        "get a Lease outside Backstop's namespace",
        leases.get(OPERATOR_LEASE).await,
    );
    m.forbidden(
        "update a Lease outside Backstop's namespace (the operator's backup lock)",
        leases
            .replace(
                OPERATOR_LEASE,
                &PostParams::default(),
                &object(json!({"metadata": {"name": OPERATOR_LEASE}, "spec": {"holderIdentity": "backstop"}})),
            )
            .await,
    );
    m.forbidden(
        "create a Lease outside Backstop's namespace",
        leases
            .create(
                &PostParams::default(),
                &object(json!({"metadata": {"name": "backstop-leader"}})),
            )
            .await,
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), DB);
    m.forbidden(
        "create a pod",
        pods.create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}})),
        )
        .await,
    );
    m.forbidden(
        "delete a pod",
        pods.delete(POD, &DeleteParams::default()).await,
    );
    let jobs: Api<Job> = Api::namespaced(client.clone(), DB);
    m.forbidden(
        "delete a Job",
        jobs.delete(JOB, &DeleteParams::default()).await,
    );
}

on_both_backends!(all_namespaces_service_account_may_do_exactly_what_backstop_does);
async fn all_namespaces_service_account_may_do_exactly_what_backstop_does(backend: Backend) {
    let objects = kustomize(&deploy_dir(""));
    let (sim, client, skipped) = cluster_with(backend, &objects).await;
    let expected: BTreeSet<String> = NOT_SERVED_BY_THE_SIMULATOR
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(skipped, expected, "objects the simulator could not take");

    let mut m = Matrix::default();
    backstops_requests(backend, &mut m, &client, DB, true).await;
    backstops_requests(backend, &mut m, &client, OTHER, true).await;
    leader_election(&mut m, &client).await;
    never(&mut m, &client).await;
    m.assert_all_as_expected();
    sim.shutdown().await;
}

on_both_backends!(namespaced_service_account_is_confined_to_its_namespaces);
async fn namespaced_service_account_is_confined_to_its_namespaces(backend: Backend) {
    let objects = kustomize(&deploy_dir("namespaced"));
    let (sim, client, skipped) = cluster_with(backend, &objects).await;
    let expected: BTreeSet<String> = NOT_SERVED_BY_THE_SIMULATOR
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(skipped, expected, "objects the simulator could not take");

    let mut m = Matrix::default();
    backstops_requests(backend, &mut m, &client, DB, false).await;
    leader_election(&mut m, &client).await;
    never(&mut m, &client).await;
    let all: Api<PerconaXtraDBCluster> = Api::all(client.clone());
    m.forbidden(
        "list clusters in all namespaces",
        all.list(&ListParams::default()).await,
    );
    m.forbidden("watch clusters in all namespaces", watch(&all).await);
    let other: Api<PerconaXtraDBCluster> = Api::namespaced(client.clone(), OTHER);
    m.forbidden(
        "list clusters in an unwatched namespace",
        other.list(&ListParams::default()).await,
    );
    let other_secrets: Api<Secret> = Api::namespaced(client.clone(), OTHER);
    m.forbidden(
        "get a Secret in an unwatched namespace",
        other_secrets.get("cluster1-backup-s3-us-west").await,
    );
    m.assert_all_as_expected();
    sim.shutdown().await;
}

on_both_backends!(restricted_secrets_component_allows_only_the_listed_secrets);
async fn restricted_secrets_component_allows_only_the_listed_secrets(backend: Backend) {
    let objects = kustomize_restricted_secrets();
    let (sim, client, _) = cluster_with(backend, &objects).await;
    let mut m = Matrix::default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), DB);
    m.allowed(
        "get a listed credentials Secret",
        secrets.get("cluster1-backup-s3-us-west").await,
    );
    m.forbidden(
        "get an unlisted Secret",
        secrets.get("s3-credentials").await,
    );
    m.forbidden("list Secrets", secrets.list(&ListParams::default()).await);
    let clusters: Api<PerconaXtraDBCluster> = Api::namespaced(client.clone(), DB);
    m.allowed(
        "the other rules are untouched: list clusters",
        clusters.list(&ListParams::default()).await,
    );
    m.assert_all_as_expected();
    sim.shutdown().await;
}
